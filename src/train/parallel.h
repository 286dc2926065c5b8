// Data-parallel plumbing shared by the trainers: rank 0 alone writes the run directory (and
// decides its name, the model init and the checkpoint to resume), and checkpoints hold the
// optimizer state in full, so a run saved by N ranks resumes on any number of ranks.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "dist/data_parallel.h"
#include "dist/process_group.h"
#include "model/causal_lm.h"
#include "store/run_store.h"
#include "train/checkpoint.h"
#include "train/run_setup.h"

namespace ponder::train {

// Ranks other than 0 print errors only (no info, warnings, LibTorch warnings or progress).
void quiet_unless_main(const dist::ProcessGroup& group);

// Lines that show every rank's `facts` (one string per rank, in rank order) once: ranks with the
// same facts share a line, "ranks 0-2, 5: FACTS" ("rank 3: ..." alone), in the order of their
// first rank.
std::vector<std::string> group_rank_facts(const std::vector<std::string>& facts);
// Collective: rank 0 logs every rank's `facts` (what can differ between ranks, such as the decode
// path taken or the cache size) as group_rank_facts lines; a single process logs nothing.
void log_rank_facts(dist::ProcessGroup& group, const std::string& facts);

// Collective: rank 0's fresh_run_dir on every rank.
std::string fresh_run_dir(dist::ProcessGroup& group, const std::string& run_dir);

// Collective: rank 0's latest_checkpoint (it alone removes leftovers of interrupted writes).
std::optional<std::filesystem::path> latest_checkpoint(dist::ProcessGroup& group,
                                                       const std::filesystem::path& run_dir);

// Collective: resolve_model with rank 0 writing the random init; returns once it exists.
ModelFiles resolve_model(dist::ProcessGroup& group, const ModelSection& model,
                         const std::filesystem::path& run_dir, std::int64_t seed);

// Rank 0's run store; the other ranks have none.
std::unique_ptr<store::RunStore> open_store_on_main(const dist::ProcessGroup& group,
                                                    const std::filesystem::path& run_dir);

// What a checkpoint holds besides the optimizer (see CheckpointContents).
struct ParallelCheckpoint {
  model::CausalLM& policy;
  const std::vector<std::string>& trainable_names;
  const TrainerState& state;
  const std::filesystem::path& tokenizer_dir;
  model::CausalLM* generator = nullptr;  // see CheckpointContents
};

// Collective: gathers the optimizer state; rank 0 flushes `store`, writes the checkpoint and
// logs it; every rank returns its path once it exists.
std::filesystem::path save_checkpoint(dist::ProcessGroup& group, dist::DataParallel& optimizer,
                                      const std::filesystem::path& run_dir,
                                      const ParallelCheckpoint& contents, store::RunStore* store);

// Every rank reads the checkpoint: trainer state, global CPU RNG, and its optimizer shard.
TrainerState load_checkpoint(const std::filesystem::path& checkpoint,
                             const std::vector<std::string>& trainable_names,
                             const std::vector<at::Tensor>& trainable,
                             dist::DataParallel& optimizer);

}  // namespace ponder::train
