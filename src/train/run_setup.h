// What every training command does before its loop: resolve data paths under PONDER_DATA, pick a
// fresh run directory, materialise the model directory (random init from a preset) and find its
// tokenizer and chat format.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <string>

#include "datasets/task.h"
#include "model/causal_lm.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "rewards/reward.h"
#include "train/recipe.h"

namespace ponder::train {

// Absolute paths unchanged; relative ones under the data root (PONDER_DATA).
std::filesystem::path under_data(const std::string& path);

// run_dir itself when it holds no run.db yet, else the first free run_dir-N.
std::string fresh_run_dir(const std::string& run_dir);

struct TaskData {
  std::vector<datasets::Example> train, eval;
  std::string reward;  // the registered reward that checks this task's answers
  nlohmann::json reward_options = nlohmann::json::object();
};

// The recipe's training and held-out examples (at most data.eval_size held out). Synthetic tasks
// are generated from `seed`; an eval task trains on what its held-out head leaves.
TaskData load_task_data(const DataSection& data, std::int64_t seed);

// data.eval, or an error naming the data.* field that would give held-out examples.
const std::vector<datasets::Example>& require_heldout(const TaskData& data,
                                                      const DataSection& section);

struct ModelFiles {
  std::filesystem::path weights;    // HF layout directory
  std::filesystem::path tokenizer;  // directory with tokenizer.json
};

// model.path, or (when empty) a random init of model.preset written to RUN_DIR/init; the
// tokenizer is the model directory's own when it has one, else model.tokenizer.
ModelFiles resolve_model(const ModelSection& model, const std::filesystem::path& run_dir,
                         std::int64_t seed);

// The task's held-out questions, the ones `ponder train` evaluates on: arithmetic generated from
// seed + 7919, else the first data.eval_size of data.eval_file.
std::vector<datasets::Example> heldout_examples(const DataSection& data, std::int64_t seed);

// Every reward a training recipe may name: the built-in rule and code rewards plus `model`.
const rewards::RewardRegistry& training_rewards();

// `name` parsed, or (empty) detected from the tokenizer directory's tokenizer_config.json.
model::ChatFormat resolve_chat_format(const std::string& name,
                                      const std::filesystem::path& tokenizer_dir);

// "auto" (CUDA when available), "cpu" or "cuda"; `field` names the setting in errors.
at::Device resolve_device(const std::string& name, const std::string& field);

// train.precision as the model's linear-layer precision; unknown names throw.
model::LinearPrecision linear_precision(const TrainSection& train);

// The EOS id of the tokenizer, else of the model config; throws when neither defines one.
std::int64_t resolve_eos(const model::Tokenizer& tokenizer, const std::optional<std::int64_t>& eos);

}  // namespace ponder::train
