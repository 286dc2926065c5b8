// `ponder distill` modes logits and on_policy: a dense student learns the teacher's token
// distributions, from a top-k cache of teacher samples or at the student's own samples, and both
// models are evaluated on the same held-out questions with the same evaluator.
#pragma once

#include <filesystem>

#include "train/distill_recipe.h"

namespace ponder::train {

struct DistillSummary {
  double teacher_accuracy = 0;                              // held-out pass@1
  double student_accuracy_before = 0;                       // the student before distillation
  double student_accuracy = 0;                              // after
  std::int64_t cached_sequences = 0, cached_positions = 0;  // logits mode
  bool cache_reused = false;                                // logits: the teacher did not run
  std::filesystem::path cache, student, report;
};

// logits: the teacher samples sampling.n answers per prompt, its top-k log-probs at every
// response token go to the cache (once: an existing cache file is reused), then the student
// minimises the divergence to them on batches of cached sequences.
// on_policy: each step the student samples sampling.n answers per prompt on the rollout engine,
// the teacher scores every sampled token (top-k + tail at each position) and the student
// minimises the per-token divergence (reverse KL by default) at the states it visited.
DistillSummary run_distill(const DistillRecipe& recipe);

}  // namespace ponder::train
