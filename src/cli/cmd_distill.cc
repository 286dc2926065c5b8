#include <fmt/core.h>

#include "cli/commands.h"
#include "train/distill_traces.h"
#include "train/distill_trainer.h"

namespace ponder::cli {
namespace {

void print_traces(const train::TraceSummary& s) {
  fmt::print(
      "distill: {} prompts x samples = {} samples, {} correct, {} duplicates, {} traces kept "
      "({} prompts with a trace)\n",
      s.prompts, s.samples, s.accepted, s.duplicates, s.kept, s.prompts_with_trace);
  fmt::print("traces: {}\nreport: {}\n", s.output.string(), s.report.string());
}

void print_distill(const train::DistillSummary& s) {
  if (!s.cache.empty())
    fmt::print("teacher logit cache: {} ({} sequences, {} positions{})\n", s.cache.string(),
               s.cached_sequences, s.cached_positions, s.cache_reused ? ", reused" : "");
  fmt::print(
      "held-out accuracy: teacher {:.1f}%, student {:.1f}% before -> {:.1f}% after distillation "
      "({:.0f}% of the teacher)\n",
      100 * s.teacher_accuracy, 100 * s.student_accuracy_before, 100 * s.student_accuracy,
      100 * s.student_accuracy / std::max(s.teacher_accuracy, 1e-9));
  fmt::print("student: {}\nreport: {}\n", s.student.string(), s.report.string());
}

}  // namespace

void add_distill_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "distill",
      "Distillation: rejection-sampled teacher traces (mode traces), logit distillation from a "
      "cached teacher top-k (mode logits) or on-policy distillation (mode on_policy)");
  static std::string recipe;
  static std::vector<std::string> overrides;
  cmd->add_option("recipe", recipe, "Distillation recipe JSON file")->required();
  cmd->add_option("--set", overrides, "Override a recipe field: --set sampling.n=16 (repeatable)");
  cmd->callback([] {
    const auto r = train::load_distill_recipe(recipe, overrides);
    if (r.mode == "traces")
      print_traces(train::generate_traces(r));
    else
      print_distill(train::run_distill(r));
  });
}

}  // namespace ponder::cli
