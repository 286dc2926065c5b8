// `ponder rm train`: a reward model (scalar head on a causal-LM backbone) trained with the
// Bradley-Terry loss on preference pairs, held-out pairwise accuracy logged to the run store.
#pragma once

#include <filesystem>

#include "train/sft_recipe.h"

namespace ponder::train {

struct RmSummary {
  std::int64_t steps = 0;
  double train_loss = 0;     // last step's mean -log sigmoid(r_chosen - r_rejected)
  double eval_accuracy = 0;  // held-out share of pairs with r_chosen > r_rejected
  double eval_loss = 0;
  std::filesystem::path run_dir, checkpoint, report;
};

RmSummary run_rm(const RmRecipe& recipe);

}  // namespace ponder::train
