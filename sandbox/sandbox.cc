#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/log.h"
#include "sandbox/child_setup.h"
#include "sandbox/languages.h"
#include "sandbox/root_layout.h"
#include "sandbox/seccomp_filter.h"

namespace ponder::sandbox {
namespace bp = boost::process;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kNobody = 65534;
constexpr uid_t kInnerUid = 1000;  // non-zero, so the program has no capabilities after execve
constexpr std::uint64_t kCollectCap = 256ull << 20;
// Setup and teardown on top of the wall limit before the parent kills the sandbox itself.
constexpr double kBackstopGraceS = 5.0;

// Our on_exec_setup must come after Boost's stdio redirections (handlers run in order).
struct Launcher : bp::extend::handler {
  const detail::ChildPlan* plan;

  template <typename Executor>
  void on_exec_setup(Executor&) const {
    detail::enter_sandbox(*plan);
  }
  // The outer child exits right after reporting; reap it so no zombie is left.
  template <typename Executor>
  void on_error(Executor& exec, const std::error_code&) const {
    if (exec.pid > 0) waitpid(exec.pid, nullptr, 0);
  }
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct PipeFds {
  Fd read, write;
};

// Close-on-exec, so that processes forked meanwhile on other threads do not inherit them.
std::array<int, 2> cloexec_pipe() {
  std::array<int, 2> fds;
  if (pipe2(fds.data(), O_CLOEXEC) != 0) {
    throw Error(std::string("sandbox: pipe2: ") + strerror(errno));
  }
  return fds;
}

std::unique_ptr<PipeFds> make_pipe() {
  auto [read_end, write_end] = cloexec_pipe();
  return std::unique_ptr<PipeFds>(new PipeFds{Fd(read_end), Fd(write_end)});
}

// Boost's own pipes are not close-on-exec; dup2 onto the child's stdout/stderr clears the flag
// there.
bp::pipe output_pipe() {
  auto [read_end, write_end] = cloexec_pipe();
  return bp::pipe(read_end, write_end);
}

void check_command(const Command& command) {
  if (command.argv.empty() || command.argv[0].empty() || command.argv[0][0] != '/') {
    throw Error("sandbox: command argv[0] must be an absolute path inside the sandbox");
  }
  for (const File& file : command.files) {
    if (file.name.empty() || file.name == "." || file.name == ".." ||
        file.name.find('/') != std::string::npos) {
      throw Error("sandbox: file name '" + file.name + "' must be a plain name inside /work");
    }
  }
}

// Host temp dir standing in for /work when isolation is off; removed with the object.
class UnsafeWorkDir {
 public:
  UnsafeWorkDir() {
    std::string pattern = (fs::temp_directory_path() / "ponder-unsafe-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw Error("sandbox: mkdtemp: " + std::string(strerror(errno)));
    path_ = pattern;
  }
  ~UnsafeWorkDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

detail::ChildPlan make_plan(const Command& command, const Limits& limits, bool isolate,
                            const std::string& work_dir) {
  detail::ChildPlan plan;
  plan.isolate = isolate;
  plan.parent_pid = getpid();
  plan.work_dir = work_dir;
  for (const File& file : command.files) {
    plan.files.push_back(
        {work_dir + "/" + file.name, &file.content, file.executable ? 0755u : 0644u});
  }
  plan.stdin_path = isolate ? "/.stdin" : work_dir + "/.stdin";
  plan.stdin_data = &command.stdin_data;
  if (!command.collect_file.empty()) plan.collect_path = work_dir + "/" + command.collect_file;
  plan.collect_cap = kCollectCap;
  plan.wall_us = static_cast<std::int64_t>(limits.wall_s * 1e6);
  plan.cpu_seconds = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(limits.cpu_s)));
  plan.memory_bytes = limits.memory_mb << 20;
  plan.max_processes = limits.max_processes;
  plan.max_file_bytes = limits.max_file_mb << 20;
  plan.max_open_files = limits.max_open_files;
  if (!isolate) return plan;
  plan.drop_root = geteuid() == 0;
  plan.outer_uid = plan.drop_root ? kNobody : geteuid();
  plan.outer_gid = plan.drop_root ? kNobody : getegid();
  plan.uid_map = std::to_string(kInnerUid) + " " + std::to_string(plan.outer_uid) + " 1";
  plan.gid_map = std::to_string(kInnerUid) + " " + std::to_string(plan.outer_gid) + " 1";
  plan.staging_root = detail::kStagingRoot;
  plan.tmpfs_options = "size=" + std::to_string(limits.disk_mb) + "m,nr_inodes=16384,mode=755";
  plan.mounts = &detail::root_layout();
  plan.seccomp = &detail::seccomp_program();
  return plan;
}

struct Captured {
  std::string stdout_data, stderr_data, status;
  bool truncated = false;
  bool killed_by_backstop = false;
};

// Reads stdout, stderr and init's status pipe until all three close. Output beyond the cap
// closes that pipe (the program gets EPIPE) so a flood cannot hold the worker.
Captured capture(bp::pipe& out, bp::pipe& err, Fd& status, pid_t outer_child,
                 const Limits& limits) {
  Captured captured;
  const auto backstop = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(limits.wall_s + kBackstopGraceS);
  struct Stream {
    int fd;
    std::string* data;
    std::size_t cap;
    bool open = true;
  } streams[] = {{out.native_source(), &captured.stdout_data,
                  static_cast<std::size_t>(limits.max_output_bytes)},
                 {err.native_source(), &captured.stderr_data,
                  static_cast<std::size_t>(limits.max_output_bytes)},
                 {status.get(), &captured.status, sizeof(detail::InitReport) + kCollectCap}};
  std::vector<char> buffer(1 << 16);
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Stream*> polled;
    for (Stream& s : streams) {
      if (!s.open) continue;
      fds.push_back({s.fd, POLLIN, 0});
      polled.push_back(&s);
    }
    if (fds.empty()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        backstop - std::chrono::steady_clock::now());
    int timeout = captured.killed_by_backstop ? -1 : std::max<int>(0, left.count());
    int ready = poll(fds.data(), fds.size(), timeout);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      kill(outer_child, SIGKILL);  // init follows through PR_SET_PDEATHSIG
      captured.killed_by_backstop = true;
      continue;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Stream& s = *polled[i];
      ssize_t n = read(s.fd, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        s.open = false;
        continue;
      }
      std::size_t room = s.cap - std::min(s.cap, s.data->size());
      s.data->append(buffer.data(), std::min<std::size_t>(room, static_cast<std::size_t>(n)));
      if (static_cast<std::size_t>(n) > room) {
        captured.truncated = true;
        s.open = false;
        if (s.fd == out.native_source()) out.close();
        if (s.fd == err.native_source()) err.close();
      }
    }
  }
  return captured;
}

void throw_if_setup_failed(const std::string& status, bool isolate) {
  detail::SetupFailure failure;
  if (status.size() < sizeof(failure)) return;
  std::memcpy(&failure, status.data(), sizeof(failure));
  if (failure.magic != detail::kSetupFailureMagic) return;
  throw Error("sandbox: " + status.substr(sizeof(failure), failure.length) + ": " +
              strerror(failure.error) +
              (isolate ? " (refusing to run the program without isolation)" : ""));
}

RunResult to_result(const Captured& captured) {
  RunResult result;
  result.stdout_data = captured.stdout_data;
  result.stderr_data = captured.stderr_data;
  result.truncated = captured.truncated;
  detail::InitReport report;
  if (captured.status.size() < sizeof(report)) {
    if (!captured.killed_by_backstop) {
      throw Error("sandbox: the sandbox init ended without reporting (killed from outside?)");
    }
    result.signal = SIGKILL;
    result.timed_out = true;
    return result;
  }
  std::memcpy(&report, captured.status.data(), sizeof(report));
  if (report.magic != detail::kInitReportMagic) throw Error("sandbox: corrupt init report");
  const int status = report.wait_status;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  result.wall_ms = report.wall_us / 1000.0;
  result.cpu_ms = report.cpu_us / 1000.0;
  result.max_rss_kb = report.max_rss_kb;
  result.pid_namespace = report.pid_namespace;
  result.timed_out = report.timed_out != 0 || captured.killed_by_backstop;
  if (captured.status.size() == sizeof(report) + report.collected_size) {
    result.collected = captured.status.substr(sizeof(report));
  }
  return result;
}

bp::environment sandbox_environment(const std::string& home) {
  bp::environment env;
  env["PATH"] = "/usr/bin:/bin";
  env["HOME"] = home;
  env["LANG"] = "C.UTF-8";
  return env;
}

}  // namespace

Sandbox::Sandbox(SandboxOptions options) : options_(std::move(options)) {
  if (!options_.unsafe_no_isolation) detail::seccomp_program();
}

RunResult Sandbox::run_command(const Command& command, const Limits& limits) const {
  check_command(command);
  const bool isolate = !options_.unsafe_no_isolation;
  std::optional<UnsafeWorkDir> unsafe_dir;
  if (!isolate) {
    log::warn(
        "SANDBOX ISOLATION IS OFF (unsafe_no_isolation): '{}' runs as a plain child with "
        "full access to this machine. Use for debugging only.",
        command.argv[0]);
    unsafe_dir.emplace();
  }
  const std::string work_dir = isolate ? detail::kWorkDir : unsafe_dir->path();
  auto status = make_pipe();
  auto lifeline = make_pipe();
  detail::ChildPlan plan = make_plan(command, limits, isolate, work_dir);
  plan.status_write_fd = status->write.get();
  plan.lifeline_read_fd = lifeline->read.get();
  plan.lifeline_write_fd = lifeline->write.get();
  bp::pipe out = output_pipe();
  bp::pipe err = output_pipe();
  std::optional<bp::child> child;
  try {
    child.emplace(bp::exe = command.argv[0],
                  bp::args = std::vector<std::string>(command.argv.begin() + 1, command.argv.end()),
                  bp::env = sandbox_environment(work_dir), bp::std_in<bp::null, bp::std_out> out,
                  bp::std_err > err, Launcher{.plan = &plan});
  } catch (const std::exception& e) {
    throw Error(std::string("sandbox: cannot start '") + command.argv[0] + "': " + e.what() +
                (isolate ? " (refusing to run the program without isolation)" : ""));
  }
  status->write.reset();
  lifeline->read.reset();
  lifeline->write.reset();
  Captured captured = capture(out, err, status->read, child->id(), limits);
  child->wait();
  throw_if_setup_failed(captured.status, isolate);
  return to_result(captured);
}

Sandbox::Prepared Sandbox::prepare(const Program& program) const {
  const Language& lang = language(program.language);
  Prepared prepared;
  if (lang.compile_argv.empty()) {
    prepared.command.argv = lang.run_argv;
    prepared.command.files = {{lang.source_file, program.source}};
    return prepared;
  }
  Command compile{.argv = lang.compile_argv,
                  .files = {{lang.source_file, program.source}},
                  .collect_file = lang.binary};
  RunResult compiled = run_command(compile, options_.compile_limits);
  if (!compiled.ok() || compiled.collected.empty()) {
    compiled.stage = "compile";
    compiled.collected.clear();
    prepared.ok = false;
    prepared.compile_failure = std::move(compiled);
    return prepared;
  }
  prepared.command.argv = lang.run_argv;
  prepared.command.files = {{lang.binary, std::move(compiled.collected), true}};
  return prepared;
}

RunResult Sandbox::run_prepared(const Prepared& prepared, const std::string& stdin_data,
                                const Limits& limits) const {
  if (!prepared.ok) return prepared.compile_failure;
  Command command = prepared.command;
  command.stdin_data = stdin_data;
  return run_command(command, limits);
}

RunResult Sandbox::run(const Program& program, const Limits& limits) const {
  return run_prepared(prepare(program), program.stdin_data, limits);
}

namespace {

std::string clip(const std::string& text, std::size_t max_chars) {
  if (text.size() <= max_chars) return text;
  return text.substr(0, max_chars) + "\n[... " + std::to_string(text.size() - max_chars) +
         " more bytes]";
}

// Program output may be invalid UTF-8 (or cut mid-character); JSON needs valid UTF-8.
nlohmann::json utf8_string(const std::string& bytes) {
  return nlohmann::json::parse(
      nlohmann::json(bytes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

nlohmann::json to_json(const RunResult& result, std::size_t max_output_chars) {
  return {{"stage", result.stage},
          {"exit_code", result.exit_code},
          {"signal", result.signal},
          {"timed_out", result.timed_out},
          {"truncated", result.truncated},
          {"wall_ms", result.wall_ms},
          {"cpu_ms", result.cpu_ms},
          {"max_rss_kb", result.max_rss_kb},
          {"stdout", utf8_string(clip(result.stdout_data, max_output_chars))},
          {"stderr", utf8_string(clip(result.stderr_data, max_output_chars))}};
}

}  // namespace ponder::sandbox
