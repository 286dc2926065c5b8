#include <fmt/core.h>

#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "train/distill_recipe.h"
#include "train/grpo_trainer.h"

namespace ponder::cli {

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train", "Reasoning RL (GRPO family); without RECIPE runs the built-in CPU quickstart");
  static std::string recipe;
  static std::vector<std::string> overrides;
  static std::string resume;
  static int nproc = 1;
  cmd->add_option("recipe", recipe, "Recipe JSON file (default: built-in CPU quickstart)");
  cmd->add_option("--set", overrides, "Override a recipe field: --set optim.lr=1e-5 (repeatable)");
  cmd->add_option("--resume", resume, "Continue the run in RUN_DIR from its last checkpoint");
  add_nproc_option(*cmd, nproc);
  cmd->callback([] {
    if (!resume.empty() && (!recipe.empty() || !overrides.empty()))
      throw Error("train --resume RUN_DIR takes the recipe stored in the run; drop RECIPE/--set");
    std::optional<train::GrpoRecipe> r;  // checked before any rank starts
    if (resume.empty()) r = train::load_recipe(recipe, overrides);
    run_ranks(nproc, [&r](dist::ProcessGroup& group) {
      const bool main = group.is_main();
      train::TrainSummary summary;
      if (!r) {
        if (main) fmt::print(stderr, "train: resuming {}\n", resume);
        summary = train::resume_grpo(resume, group);
      } else {
        if (main)
          fmt::print(stderr, "train: {} -> {}\n",
                     recipe.empty() ? "built-in CPU quickstart" : recipe, r->run_dir);
        summary = train::run_grpo(*r, group);
      }
      if (!main) return;
      fmt::print("held-out accuracy: {:.1f}% after SFT, {:.1f}% after GRPO ({:+.1f} points)\n",
                 100 * summary.accuracy_before_rl, 100 * summary.accuracy_after_rl,
                 100 * (summary.accuracy_after_rl - summary.accuracy_before_rl));
      fmt::print("report: {}\n", summary.report.string());
    });
  });

  auto* recipe_cmd = app.add_subcommand("recipe", "Inspect recipes");
  auto* check =
      recipe_cmd->add_subcommand("check", "Validate a recipe and print it fully resolved");
  static std::string check_path;
  static std::vector<std::string> check_overrides;
  check->add_option("file", check_path, "Recipe JSON file")->required();
  check->add_option("--set", check_overrides, "Override a recipe field (repeatable)");
  check->callback([] {
    // A distillation recipe names a teacher; every other recipe is a GRPO recipe.
    if (read_json_file(check_path).contains("teacher"))
      fmt::print(
          "{}\n",
          json_struct::write(train::load_distill_recipe(check_path, check_overrides)).dump(2));
    else
      fmt::print("{}\n",
                 train::recipe_to_json(train::load_recipe(check_path, check_overrides)).dump(2));
  });
  recipe_cmd->require_subcommand(1);
}

}  // namespace ponder::cli
