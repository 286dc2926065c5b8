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

}  // namespace ponder::train
