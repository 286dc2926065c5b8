#include <fmt/core.h>

#include "cli/commands.h"
#include "train/distill_traces.h"

namespace ponder::cli {

void add_distill_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "distill",
      "Distillation step 1: rejection-sampled teacher traces -> SFT jsonl with provenance");
  static std::string recipe;
  static std::vector<std::string> overrides;
  cmd->add_option("recipe", recipe, "Distillation recipe JSON file")->required();
  cmd->add_option("--set", overrides, "Override a recipe field: --set sampling.n=16 (repeatable)");
  cmd->callback([] {
    const auto s = train::generate_traces(train::load_distill_recipe(recipe, overrides));
    fmt::print(
        "distill: {} prompts x samples = {} samples, {} correct, {} duplicates, {} traces kept "
        "({} prompts with a trace)\n",
        s.prompts, s.samples, s.accepted, s.duplicates, s.kept, s.prompts_with_trace);
    fmt::print("traces: {}\nreport: {}\n", s.output.string(), s.report.string());
  });
}

}  // namespace ponder::cli
