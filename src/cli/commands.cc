#include "cli/commands.h"

namespace ponder::cli {
namespace {

std::vector<std::string>& saved_command_line() {
  static std::vector<std::string> args;
  return args;
}

}  // namespace

const std::vector<std::string>& command_line() { return saved_command_line(); }

int run(int argc, char** argv) {
  saved_command_line().assign(argv, argv + argc);
  CLI::App app{
      "ponder: reasoning RL post-training in one binary.\n"
      "Typical flow: `ponder train RECIPE.json` runs GRPO and writes a run directory;\n"
      "`ponder report RUN_DIR` renders its HTML report. See `ponder COMMAND --help`.",
      "ponder"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every sub-command");
  add_version_command(app);
  add_report_command(app);
  add_train_command(app);
  add_model_commands(app);
  add_generate_command(app);
  add_sandbox_command(app);
  add_reward_command(app);
  add_eval_command(app);
  add_sft_command(app);
  add_rm_command(app);
  add_distill_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace ponder::cli
