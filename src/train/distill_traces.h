// `ponder distill` step 1: rejection-sampled traces. The teacher generates n answers per prompt
// on the rollout engine, rule rewards keep the correct ones, duplicates are removed, and the
// survivors become an SFT dataset (chat jsonl) with each trace's provenance.
#pragma once

#include <filesystem>
#include <vector>

#include "datasets/task.h"
#include "train/distill_recipe.h"

namespace ponder::train {

struct TraceSummary {
  std::int64_t prompts = 0, samples = 0, accepted = 0, duplicates = 0, kept = 0;
  std::int64_t prompts_with_trace = 0;  // distinct questions
  std::filesystem::path output, report;
};

TraceSummary generate_traces(const DistillRecipe& recipe);

// The recipe's training prompts: the task's train split (run_setup's load_task_data), cut to
// max_prompts (synthetic tasks: 1000 when max_prompts is 0).
std::vector<datasets::Example> distill_prompts(const DistillRecipe& recipe);

}  // namespace ponder::train
