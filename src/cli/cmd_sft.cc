#include <fmt/core.h>

#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "train/sft_trainer.h"

namespace ponder::cli {

void add_sft_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sft", "Supervised fine-tuning on chat jsonl (loss on assistant tokens, packed batches)");
  static std::string recipe;
  static std::vector<std::string> overrides;
  static std::string resume;
  static int nproc = 1;
  cmd->add_option("recipe", recipe, "SFT recipe JSON file");
  cmd->add_option("--set", overrides, "Override a recipe field: --set optim.lr=1e-5 (repeatable)");
  cmd->add_option("--resume", resume, "Continue the run in RUN_DIR from its last checkpoint");
  add_nproc_option(*cmd, nproc);
  cmd->callback([] {
    if (!resume.empty() && (!recipe.empty() || !overrides.empty()))
      throw Error("sft --resume RUN_DIR takes the recipe stored in the run; drop RECIPE/--set");
    if (resume.empty() && recipe.empty()) throw Error("sft: a RECIPE file is required");
    std::optional<train::SftRecipe> r;  // checked before any rank starts
    if (resume.empty()) r = train::load_sft_recipe(recipe, overrides);
    run_ranks(nproc, [&r](dist::ProcessGroup& group) {
      const train::SftSummary summary =
          r ? train::run_sft(*r, group) : train::resume_sft(resume, group);
      if (!group.is_main()) return;
      fmt::print("sft: {} steps, train loss {:.4f} nats/token, held-out loss {:.4f} nats/token\n",
                 summary.steps, summary.train_loss, summary.eval_loss);
      fmt::print("model: {}\nreport: {}\n", summary.checkpoint.string(), summary.report.string());
    });
  });
}

}  // namespace ponder::cli
