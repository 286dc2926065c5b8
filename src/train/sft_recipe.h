// Recipes for `ponder sft` and `ponder rm train`: every field with its default and help text in
// one place; the model and optimizer sections are the GRPO recipe's own.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace ponder::train {

struct ChatDataSection {
  std::string train_file;  // jsonl; relative paths are under PONDER_DATA
  std::string eval_file;   // held-out jsonl; empty: the last eval_fraction of train_file
  double eval_fraction = 0.0;
  std::string chat_format;  // empty: detected from tokenizer_config.json
  std::int64_t max_seq_len = 1024;
  template <class V>
  void fields(V& v) {
    v("train_file", train_file, "training jsonl (relative paths are under PONDER_DATA)");
    v("eval_file", eval_file, "held-out jsonl (empty: split eval_fraction off train_file)");
    v("eval_fraction", eval_fraction, "share of train_file held out when eval_file is empty");
    v("chat_format", chat_format,
      "chatml | qwen3 | deepseek_v3 | llama3 | r1_zero (empty: from tokenizer_config.json)");
    v("max_seq_len", max_seq_len, "sequences are cut to this many tokens");
  }
};

struct SftRecipe {
  std::int64_t seed = 1;
  std::string run_dir = "runs/sft";
  std::int64_t epochs = 1;
  std::int64_t max_steps = 0;  // 0: as many as the epochs take
  std::int64_t batch_tokens = 4096;
  std::int64_t eval_every = 50;
  std::int64_t checkpoint_every = 0;  // 0: only at the end
  ModelSection model;
  ChatDataSection data;
  OptimSection optim;
  TrainSection train;
  template <class V>
  void fields(V& v) {
    v("seed", seed, "seed for model init and data order");
    v("run_dir", run_dir, "output directory (run.db, checkpoints, report.html)");
    v("epochs", epochs, "passes over the training data");
    v("max_steps", max_steps, "stop after this many optimizer steps (0: run all epochs)");
    v("batch_tokens", batch_tokens, "tokens packed into one optimizer step's batch");
    v("eval_every", eval_every, "held-out loss period in steps");
    v("checkpoint_every", checkpoint_every, "checkpoint period in steps (0: end only)");
    v("model", model, "model to fine-tune");
    v("data", data, "chat data");
    v("optim", optim, "optimizer");
    v("train", train, "training numerics");
  }
};

struct PreferenceDataSection {
  std::string train_file;  // jsonl with prompt, chosen, rejected
  std::string eval_file;
  double eval_fraction = 0.1;
  std::string chat_format;
  std::int64_t max_seq_len = 1024;
  template <class V>
  void fields(V& v) {
    v("train_file", train_file, "preference pairs jsonl: prompt, chosen, rejected");
    v("eval_file", eval_file, "held-out pairs jsonl (empty: split eval_fraction off train_file)");
    v("eval_fraction", eval_fraction, "share of train_file held out when eval_file is empty");
    v("chat_format", chat_format,
      "chatml | qwen3 | deepseek_v3 | llama3 | r1_zero (empty: from tokenizer_config.json)");
    v("max_seq_len", max_seq_len, "pairs with a longer side are skipped");
  }
};

struct RmRecipe {
  std::int64_t seed = 1;
  std::string run_dir = "runs/rm";
  std::int64_t epochs = 1;
  std::int64_t max_steps = 0;
  std::int64_t pairs_per_step = 16;
  std::int64_t eval_every = 50;
  std::int64_t checkpoint_every = 0;
  ModelSection model;  // backbone: a causal LM (its lm_head is dropped) or a reward model
  PreferenceDataSection data;
  OptimSection optim;
  template <class V>
  void fields(V& v) {
    v("seed", seed, "seed for the score head init and data order");
    v("run_dir", run_dir, "output directory (run.db, checkpoints, report.html)");
    v("epochs", epochs, "passes over the training pairs");
    v("max_steps", max_steps, "stop after this many optimizer steps (0: run all epochs)");
    v("pairs_per_step", pairs_per_step, "preference pairs per optimizer step");
    v("eval_every", eval_every, "held-out pairwise accuracy period in steps");
    v("checkpoint_every", checkpoint_every, "checkpoint period in steps (0: end only)");
    v("model", model, "backbone: causal LM or reward model directory, or a preset");
    v("data", data, "preference pairs");
    v("optim", optim, "optimizer");
  }
};

// Read a recipe file (empty path: defaults), apply --set overrides, validate.
SftRecipe load_sft_recipe(const std::string& path, const std::vector<std::string>& overrides);
RmRecipe load_rm_recipe(const std::string& path, const std::vector<std::string>& overrides);

}  // namespace ponder::train
