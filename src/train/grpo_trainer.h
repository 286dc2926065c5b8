// `ponder train`: the GRPO loop (optional SFT warm-up, rollouts, rewards, group advantages,
// clipped policy update, evaluation, run store, checkpoint, report), defined in one file.
#pragma once

#include <filesystem>

#include "dist/process_group.h"
#include "train/recipe.h"

namespace ponder::train {

struct TrainSummary {
  double accuracy_before_rl = 0;  // held-out accuracy after SFT, before GRPO
  double accuracy_after_rl = 0;
  std::filesystem::path report;
};

// Collective over `group` (one process, or the ranks of a data-parallel run, which end with the
// same weights as one process on the same global batch). Rank 0 alone writes the run directory;
// the other ranks return an empty report path.
TrainSummary run_grpo(const GrpoRecipe& recipe, dist::ProcessGroup& group);
// Continues the run in RUN_DIR from its newest complete checkpoint with the recipe it was started
// with, on any number of ranks; the final state equals an uninterrupted run's (bit-exact on CPU
// with the same number of ranks). Without a checkpoint (killed during SFT) the run starts over.
TrainSummary resume_grpo(const std::filesystem::path& run_dir, dist::ProcessGroup& group);

}  // namespace ponder::train
