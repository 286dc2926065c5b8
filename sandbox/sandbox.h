// Isolated execution of untrusted programs: each run gets fresh user/PID/network/mount/IPC/UTS
// namespaces, a private tmpfs root, rlimits, a seccomp deny list, a wall timeout and output caps.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::sandbox {

struct Limits {
  double wall_s = 10.0;
  double cpu_s = 10.0;
  std::int64_t memory_mb = 1024;  // address space (RLIMIT_AS)
  int max_processes = 64;         // RLIMIT_NPROC inside the run's own user namespace
  std::int64_t max_file_mb = 16;  // RLIMIT_FSIZE
  std::int64_t disk_mb = 64;      // size of the private tmpfs holding /work and /tmp
  int max_open_files = 64;
  std::int64_t max_output_bytes = 1 << 20;  // per stream; more sets `truncated`
};

// A file placed in /work before the command starts.
struct File {
  std::string name;  // relative to /work, no directories
  std::string content;
  bool executable = false;
};

// One command run in a fresh sandbox. argv[0] is an absolute path inside the sandbox.
// `collect_file`, when set, is read back from /work after a successful exit.
struct Command {
  std::vector<std::string> argv;
  std::vector<File> files;
  std::string stdin_data;
  std::string collect_file;
};

// A source program in a language of the table in languages.h.
struct Program {
  std::string language;
  std::string source;
  std::string stdin_data;
};

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string stdout_data;
  std::string stderr_data;
  double wall_ms = 0;
  double cpu_ms = 0;
  std::int64_t max_rss_kb = 0;
  bool timed_out = false;     // wall or CPU limit hit
  bool truncated = false;     // stdout or stderr exceeded max_output_bytes
  std::string stage = "run";  // "compile" when a compile step failed and nothing ran
  std::string collected;      // content of Command::collect_file
  // Inode of the run's PID namespace (0 without isolation): lets callers check that no
  // process of the run survives it.
  std::uint64_t pid_namespace = 0;

  bool ok() const { return exit_code == 0 && !timed_out; }
};

nlohmann::json to_json(const RunResult& result, std::size_t max_output_chars);

struct SandboxOptions {
  // Debugging only: runs programs as plain children (rlimits and timeouts, but no namespaces,
  // no seccomp, a host temp dir). Logs a loud warning on every run.
  bool unsafe_no_isolation = false;
  Limits compile_limits = {
      .wall_s = 30, .cpu_s = 20, .memory_mb = 2048, .max_file_mb = 64, .disk_mb = 256};
};

// Thread-safe; one instance can serve every worker. run() throws ponder::Error when the kernel
// refuses a namespace, a mount or seccomp: it never falls back to running unconfined.
class Sandbox {
 public:
  explicit Sandbox(SandboxOptions options = {});

  RunResult run(const Program& program, const Limits& limits) const;
  RunResult run_command(const Command& command, const Limits& limits) const;

  // Compiles once (for compiled languages) so several inputs can run the same binary. On a
  // failed compile, `compile_failure` holds its result and `run_command` is empty.
  struct Prepared {
    Command command;
    RunResult compile_failure;
    bool ok = true;
  };
  Prepared prepare(const Program& program) const;
  RunResult run_prepared(const Prepared& prepared, const std::string& stdin_data,
                         const Limits& limits) const;

 private:
  SandboxOptions options_;
};

}  // namespace ponder::sandbox
