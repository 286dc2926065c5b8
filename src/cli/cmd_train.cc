#include "cli/commands.h"
#include "core/error.h"

namespace ponder::cli {

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "Reasoning RL (GRPO family); without RECIPE runs the built-in CPU quickstart");
  static std::string recipe;
  static std::vector<std::string> overrides;
  static std::string resume;
  cmd->add_option("recipe", recipe, "Recipe JSON file (default: built-in CPU quickstart)");
  cmd->add_option("--set", overrides, "Override a recipe field: --set train.lr=1e-5 (repeatable)");
  cmd->add_option("--resume", resume, "Continue the run in RUN_DIR from its last checkpoint");
  cmd->callback([] {
    throw Error(
        "train: the GRPO trainer and the CPU quickstart recipe are not built yet (issue 8)");
  });
}

}  // namespace ponder::cli
