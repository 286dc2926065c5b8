#include "sandbox/cli_run.h"

#include <cstdio>
#include <iostream>

#include "core/json_file.h"
#include "sandbox/sandbox.h"

namespace ponder::sandbox {

int run_sandbox_command(const SandboxRunOptions& options) {
  Program program{.language = options.language, .source = read_text_file(options.file)};
  if (!options.stdin_file.empty()) program.stdin_data = read_text_file(options.stdin_file);
  Limits limits{.wall_s = options.time_limit_s,
                .cpu_s = options.time_limit_s,
                .memory_mb = options.memory_limit_mb};
  Sandbox sandbox({.unsafe_no_isolation = options.unsafe_no_isolation});
  RunResult result = sandbox.run(program, limits);
  std::cout << result.stdout_data << std::flush;
  std::cerr << result.stderr_data;
  nlohmann::json summary = to_json(result, 0);
  summary.erase("stdout");
  summary.erase("stderr");
  std::cerr << summary.dump() << std::endl;
  if (result.timed_out) return 124;
  if (result.signal != 0) return 128 + result.signal;
  return result.exit_code;
}

}  // namespace ponder::sandbox
