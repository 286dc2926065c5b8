// Sandbox throughput: runs/s of a trivial Python program through the SandboxPool, against the
// baseline of plain unsandboxed fork+exec of the same interpreter on as many threads, measured
// in the same process in alternating rounds. Usage: bench_sandbox [RUNS_PER_ROUND] [ROUNDS]
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "sandbox/languages.h"
#include "sandbox/pool.h"

namespace {

using ponder::sandbox::RunRequest;

constexpr const char* kProgram = "print('hello')\n";

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// fork + execve of the interpreter on a script, stdout through a pipe, then waitpid.
bool plain_run(const std::vector<std::string>& argv, const std::string& dir) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return false;
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char* env[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    if (chdir(dir.c_str()) != 0) _exit(126);
    execve(args[0], args.data(), env);
    _exit(127);
  }
  close(out[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(out[0], buffer, sizeof(buffer))) > 0;) output.append(buffer, n);
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && output == "hello\n";
}

double plain_round(std::size_t workers, int runs, const std::string& dir) {
  const auto& argv = ponder::sandbox::language("python").run_argv;
  ponder::ThreadPool pool(workers, 2 * workers);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::future<bool>> results;
  for (int i = 0; i < runs; ++i)
    results.push_back(pool.submit([&] { return plain_run(argv, dir); }));
  for (auto& r : results) {
    if (!r.get()) throw std::runtime_error("plain run failed");
  }
  return runs / seconds_since(start);
}

double sandbox_round(ponder::sandbox::SandboxPool& pool, int runs) {
  std::vector<RunRequest> requests;
  for (int i = 0; i < runs; ++i) {
    requests.push_back({.id = static_cast<std::uint64_t>(i),
                        .program = {.language = "python", .source = kProgram}});
  }
  auto start = std::chrono::steady_clock::now();
  for (const auto& response : pool.run_all(requests)) {
    if (!response.error.empty() || response.result.stdout_data != "hello\n") {
      throw std::runtime_error("sandbox run failed: " + response.error);
    }
  }
  return runs / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 200;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const auto dir =
      std::filesystem::temp_directory_path() / ("bench-sandbox-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "main.py") << kProgram;
  ponder::sandbox::Sandbox sandbox;
  ponder::sandbox::SandboxPool pool(sandbox);
  double plain = 0, sandboxed = 0;
  for (int round = 0; round < rounds; ++round) {
    double p = plain_round(pool.workers(), runs, dir.string());
    double s = sandbox_round(pool, runs);
    std::printf("round %d: plain fork+exec %.1f runs/s, sandbox pool %.1f runs/s\n", round, p, s);
    plain += p / rounds;
    sandboxed += s / rounds;
  }
  std::filesystem::remove_all(dir);
  std::printf("workers %zu, %d runs x %d rounds of a print(...) python script\n", pool.workers(),
              runs, rounds);
  std::printf("plain fork+exec: %.1f runs/s\nsandbox pool:    %.1f runs/s\nratio: %.2f\n", plain,
              sandboxed, sandboxed / plain);
  return 0;
}
