// `ponder train`: the GRPO loop (optional SFT warm-up, rollouts, rewards, group advantages,
// clipped policy update, evaluation, run store, checkpoint, report), defined in one file.
#pragma once

#include <filesystem>

#include "train/recipe.h"

namespace ponder::train {

struct TrainSummary {
  double accuracy_before_rl = 0;  // held-out accuracy after SFT, before GRPO
  double accuracy_after_rl = 0;
  std::filesystem::path report;
};

TrainSummary run_grpo(const GrpoRecipe& recipe);
// Continues the run in RUN_DIR from its newest complete checkpoint with the recipe it was started
// with; the final state equals an uninterrupted run's (bit-exact on CPU). Without a checkpoint
// (killed during SFT) the run starts over.
TrainSummary resume_grpo(const std::filesystem::path& run_dir);

}  // namespace ponder::train
