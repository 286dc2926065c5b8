#include <fmt/core.h>

#include "cli/commands.h"
#include "core/error.h"
#include "train/rm_trainer.h"

namespace ponder::cli {

void add_rm_command(CLI::App& app) {
  auto* rm = app.add_subcommand("rm", "Reward models");
  auto* cmd = rm->add_subcommand(
      "train", "Train a reward model (Bradley-Terry) on prompt/chosen/rejected jsonl pairs");
  static std::string recipe;
  static std::vector<std::string> overrides;
  cmd->add_option("recipe", recipe, "Reward-model recipe JSON file")->required();
  cmd->add_option("--set", overrides, "Override a recipe field: --set optim.lr=1e-5 (repeatable)");
  cmd->callback([] {
    const auto summary = train::run_rm(train::load_rm_recipe(recipe, overrides));
    fmt::print("rm: {} steps, held-out pairwise accuracy {:.1f}%, held-out loss {:.4f} nats\n",
               summary.steps, 100 * summary.eval_accuracy, summary.eval_loss);
    fmt::print("model: {}\nreport: {}\n", summary.checkpoint.string(), summary.report.string());
  });
  rm->require_subcommand(1);
}

}  // namespace ponder::cli
