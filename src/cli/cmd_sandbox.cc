#include "cli/commands.h"
#include "sandbox/cli_run.h"

namespace ponder::cli {

void add_sandbox_command(CLI::App& app) {
  auto* group = app.add_subcommand("sandbox", "Run untrusted programs the way code rewards do");
  auto* cmd =
      group->add_subcommand("run", "Run one program in the sandbox and print its RunResult");
  static sandbox::SandboxRunOptions o;
  cmd->add_option("file", o.file, "Program source file")->required();
  cmd->add_option("--lang", o.language, "Language: python, cpp, c (or an alias)")->required();
  cmd->add_option("--stdin", o.stdin_file, "File fed to the program's standard input");
  cmd->add_option("--time-limit", o.time_limit_s, "Wall-clock limit in seconds")
      ->capture_default_str();
  cmd->add_option("--memory-limit", o.memory_limit_mb, "Memory limit in MB")->capture_default_str();
  cmd->add_flag("--unsafe-no-isolation", o.unsafe_no_isolation,
                "Run WITHOUT namespaces or seccomp (debugging only)");
  cmd->callback([] { std::exit(sandbox::run_sandbox_command(o)); });
  group->require_subcommand(1);
}

}  // namespace ponder::cli
