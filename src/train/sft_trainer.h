// `ponder sft`: supervised fine-tuning on chat jsonl — packed fixed-token batches, loss on the
// assistant's tokens only, AdamW with warmup + schedule, held-out loss, checkpoints, run store.
#pragma once

#include <filesystem>

#include "dist/process_group.h"
#include "train/sft_recipe.h"

namespace ponder::train {

struct SftSummary {
  std::int64_t steps = 0;
  double train_loss = 0;  // last step's mean NLL per assistant token (nats)
  double eval_loss = 0;   // held-out mean NLL per assistant token (nats); NaN without held-out
  std::filesystem::path run_dir, checkpoint, report;
};

// Collective over `group` (one process, or the ranks of a data-parallel run, which end with the
// same weights as one process). Rank 0 alone writes the run directory; the other ranks return
// no report path.
SftSummary run_sft(const SftRecipe& recipe, dist::ProcessGroup& group);
// Continues RUN_DIR from its newest complete checkpoint with the recipe it was started with, on
// any number of ranks; the result equals an uninterrupted run's on CPU.
SftSummary resume_sft(const std::filesystem::path& run_dir, dist::ProcessGroup& group);

}  // namespace ponder::train
