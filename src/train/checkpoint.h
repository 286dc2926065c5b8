// Trainer checkpoints: the policy in HF layout plus everything an exact resume needs (optimizer
// moments, RNG state, data cursor, step), written to a temp dir and renamed into place.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "train/adamw.h"

namespace ponder::train {

struct TrainerState {
  std::int64_t step = 0;          // RL steps completed
  std::uint64_t cursor = 0;       // index of the next training example
  double accuracy_before_rl = 0;  // held-out accuracy right after SFT
  double accuracy = 0;            // latest held-out accuracy
};

struct CheckpointContents {
  model::CausalLM& policy;
  const std::vector<std::string>& trainable_names;  // optimizer state order
  const AdamWState& optimizer;                      // in full, whatever the number of ranks
  const TrainerState& state;
  const std::filesystem::path& tokenizer_dir;  // its tokenizer files are copied alongside
  // One-step off-policy: the weights the pending batch is being generated with (null: none).
  model::CausalLM* generator = nullptr;
};

// Writes RUN_DIR/checkpoints/step-N (N = state.step) atomically; returns its path.
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir,
                                      const CheckpointContents& contents);

// Copies tokenizer.json and tokenizer_config.json (those present) from one directory to another.
void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to);

// The newest complete checkpoint under RUN_DIR/checkpoints; leftovers of a write that was
// interrupted are removed.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);

// One-step off-policy: loads the checkpoint's generation weights into `generator`; false when
// the checkpoint has none (nothing was pending when it was written).
bool load_generator_weights(const std::filesystem::path& checkpoint, model::CausalLM& generator);

// Restores optimizer moments and steps (into `optimizer`, shaped by adamw_state_like) and the
// global CPU RNG; returns the trainer state.
TrainerState load_trainer_state(const std::filesystem::path& checkpoint,
                                const std::vector<std::string>& trainable_names,
                                AdamWState& optimizer);

}  // namespace ponder::train
