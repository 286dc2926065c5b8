// The GRPO recipe: every field with its default and help text in one place. The defaults are the
// CPU quickstart (tiny MLA/MoE model, SFT warm-up, GRPO on synthetic arithmetic).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::train {

struct ModelSection {
  std::string path;                 // HF checkpoint dir; empty = random init from `preset`
  std::string preset = "tiny-mla";  // used when path is empty
  std::string tokenizer =
      "tokenizers/minimind";  // dir with tokenizer.json; relative = under PONDER_DATA
  template <class V>
  void fields(V& v) {
    v("path", path, "HF checkpoint directory (empty: random init from preset)");
    v("preset", preset, "ponder init-model preset when path is empty");
    v("tokenizer", tokenizer, "tokenizer directory; relative paths are under PONDER_DATA");
  }
};

struct DataSection {
  std::string task = "arithmetic";  // arithmetic | countdown | gsm8k | math | an eval task
  std::string train_file;           // gsm8k/math jsonl (relative = under PONDER_DATA)
  std::string eval_file;
  std::string eval_task;  // held-out task when training on an eval task (default: its head)
  int digits = 2;         // arithmetic operand size
  int numbers = 3;        // countdown operands
  double worked_fraction = 0.5;
  std::int64_t eval_size = 50;
  std::string chat_format = "chatml";
  template <class V>
  void fields(V& v) {
    v("task", task,
      "arithmetic | countdown (synthetic) | gsm8k | math (train_file/eval_file) | a `ponder eval` "
      "task (mbpp, humaneval, aime24, ...) or task .json");
    v("train_file", train_file, "training jsonl for gsm8k/math");
    v("eval_file", eval_file, "held-out jsonl for gsm8k/math");
    v("eval_task", eval_task,
      "eval-task training: held-out task (empty: the first eval_size items of `task`, which are "
      "then left out of training)");
    v("digits", digits, "operand digits for the arithmetic task");
    v("numbers", numbers, "numbers per countdown puzzle");
    v("worked_fraction", worked_fraction,
      "share of arithmetic SFT solutions worked column by column (the rest answer directly)");
    v("eval_size", eval_size, "held-out examples used for accuracy");
    v("chat_format", chat_format,
      "prompt format: chatml | qwen3 | smollm2 | deepseek_v3 | llama3 | r1_zero");
  }
};

struct RolloutSection {
  std::int64_t prompts_per_step = 8;
  std::int64_t n = 8;
  double temperature = 1.0;
  double top_p = 1.0;
  std::int64_t max_tokens = 48;
  std::int64_t off_policy_steps = 0;
  std::string kv_cache_dtype = "auto";
  std::string dtype = "auto";
  double gpu_memory_utilization = 0.3;
  bool release_kv_cache = true;
  bool release_decode_graphs = false;
  template <class V>
  void fields(V& v) {
    v("prompts_per_step", prompts_per_step, "prompts sampled per RL step");
    v("n", n, "samples per prompt (GRPO group size)");
    v("temperature", temperature, "sampling temperature");
    v("top_p", top_p, "nucleus sampling mass");
    v("max_tokens", max_tokens, "response length limit in tokens");
    v("off_policy_steps", off_policy_steps,
      "0: generate each step's batch with the current weights, then train | 1: generate step "
      "t+1's batch on a copy of the weights from before step t's update while step t trains "
      "(one-step off-policy; one process)");
    v("kv_cache_dtype", kv_cache_dtype,
      "auto: KV cache in the model's dtype | fp8: FP8 latent cache (MLA models: ~half the "
      "memory, more sequences at once)");
    v("dtype", dtype,
      "weights rollouts and held-out evaluation generate with: auto (bf16 on CUDA, fp32 on CPU) | "
      "bf16: a BF16 copy of the FP32 policy, refreshed in place after every optimizer step "
      "(64-token pages on CUDA, the MLA decode and MoE kernels' path; wider rollout/trainer "
      "log-prob gap, see grpo.tis_cap) | fp32: the policy itself");
    v("gpu_memory_utilization", gpu_memory_utilization,
      "BF16 rollouts on CUDA: share of the GPU memory free when the rollout engine starts (after "
      "the policy and its BF16 copy load) that its KV pages take; other rollouts keep 4,096 pages "
      "of 16 tokens; either way no more pages than one generate call can use at once (README: "
      "KV cache size in training)");
    v("release_kv_cache", release_kv_cache,
      "true: the KV pages of the engine generating with the current weights are freed while the "
      "policy trains (and SFT warms up) and taken back for the next rollouts or held-out "
      "evaluation (same addresses on CUDA: the decode graphs stay valid) | false: held all run");
    v("release_decode_graphs", release_decode_graphs,
      "true: the CUDA decode graphs of that engine and their memory pool (logged per step as "
      "memory/decode_graphs_gib) are dropped after each generation phase and recorded again in "
      "the next (rollout/decode_graph_recordings) | false: recorded once, kept all run");
  }
};

struct EvalSection {
  std::int64_t n = 4;  // samples per held-out prompt; accuracy is pass@1 averaged over them
  double temperature = 1.0;
  double top_p = 1.0;
  template <class V>
  void fields(V& v) {
    v("n", n, "samples per held-out prompt (accuracy = pass@1 averaged over them)");
    v("temperature", temperature, "held-out sampling temperature (0: greedy, n must be 1)");
    v("top_p", top_p, "held-out nucleus sampling mass");
  }
};

struct RewardSpec {
  std::string name;
  double weight = 1.0;
  nlohmann::json options = nlohmann::json::object();
  template <class V>
  void fields(V& v) {
    v("name", name, "registered reward name (math, format, overlong, ...)");
    v("weight", weight, "weight in the summed reward");
    v("options", options, "reward-specific options");
  }
};

struct GrpoSection {
  double clip_low = 0.2;
  double clip_high = 0.28;                      // DAPO clip-higher
  bool scale_by_std = true;                     // false = Dr.GRPO
  std::string loss_aggregation = "token_mean";  // token_mean | sequence_mean | constant
  double kl_coef = 0.0;                         // 0 = no reference model kept
  std::string kl_estimator = "k3";              // k1 | k2 | k3
  double entropy_coef = 0.0;
  std::int64_t epochs = 1;
  std::int64_t minibatches = 1;
  bool dynamic_sampling = false;  // drop groups whose rewards are all equal
  std::int64_t max_sampling_rounds = 3;
  bool overlong_filter = false;  // truncated responses take no part in the loss
  double tis_cap = 0.0;          // truncated importance sampling cap (0: off)
  template <class V>
  void fields(V& v) {
    v("clip_low", clip_low, "ratio clip below 1 - clip_low");
    v("clip_high", clip_high, "ratio clip above 1 + clip_high (DAPO clip-higher)");
    v("scale_by_std", scale_by_std, "divide advantages by the group std (false: Dr.GRPO)");
    v("loss_aggregation", loss_aggregation, "token_mean | sequence_mean | constant (Dr.GRPO)");
    v("kl_coef", kl_coef, "KL penalty to the reference model (0: none kept)");
    v("kl_estimator", kl_estimator, "k1 | k2 | k3");
    v("entropy_coef", entropy_coef, "entropy bonus coefficient");
    v("epochs", epochs, "passes over each rollout batch");
    v("minibatches", minibatches, "optimizer steps per epoch");
    v("dynamic_sampling", dynamic_sampling, "drop groups with identical rewards (DAPO)");
    v("max_sampling_rounds", max_sampling_rounds,
      "dynamic sampling: generation rounds per step to fill the batch with informative groups");
    v("overlong_filter", overlong_filter,
      "mask responses cut at max_tokens out of the loss (DAPO)");
    v("tis_cap", tis_cap,
      "truncated importance sampling: weight tokens by min(p_trainer / p_rollout, cap); 0: off");
  }
};

struct OptimSection {
  double lr = 3e-4;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.99, eps = 1e-8;
  double grad_clip = 1.0;
  std::int64_t warmup_steps = 0;
  std::string schedule = "constant";  // constant | cosine
  double routing_bias_rate = 1e-3;    // DeepSeek-V3 gamma
  double balance_loss_coef = 0.0;     // DeepSeek-V3 alpha (sequence-wise)
  template <class V>
  void fields(V& v) {
    v("lr", lr, "peak learning rate");
    v("weight_decay", weight_decay, "AdamW decoupled weight decay");
    v("beta1", beta1, "AdamW beta1");
    v("beta2", beta2, "AdamW beta2");
    v("eps", eps, "AdamW epsilon");
    v("grad_clip", grad_clip, "global gradient-norm clip (0: off)");
    v("warmup_steps", warmup_steps, "linear warmup steps");
    v("schedule", schedule, "constant | cosine after warmup");
    v("routing_bias_rate", routing_bias_rate,
      "MoE auxiliary-loss-free balancing: routing-bias step per update against expert load (0: "
      "off)");
    v("balance_loss_coef", balance_loss_coef,
      "MoE sequence-wise balance loss weight (DeepSeek-V3 alpha, e.g. 1e-4; 0: off)");
  }
};

struct SftSection {
  std::int64_t steps = 500;
  std::int64_t batch_size = 32;
  double lr = 3e-3;
  template <class V>
  void fields(V& v) {
    v("steps", steps, "SFT warm-up steps on worked solutions before RL (0: none)");
    v("batch_size", batch_size, "SFT sequences per step");
    v("lr", lr, "SFT learning rate");
  }
};

struct TrainSection {
  std::string device = "auto";     // auto | cpu | cuda
  std::string precision = "fp32";  // fp32 | bf16 | fp8
  std::int64_t micro_batch_size = 0;
  bool activation_checkpointing = false;
  template <class V>
  void fields(V& v) {
    v("device", device, "auto (cuda when available) | cpu | cuda");
    v("precision", precision,
      "GEMMs of the attention projections and FFN/expert linears: fp32 (as stored) | bf16 | fp8 "
      "(DeepSeek-V3: E4M3, 1x128 activation tiles, 128x128 weight blocks, FP32 master weights); "
      "embedding, lm head, router and norms stay high precision");
    v("micro_batch_size", micro_batch_size,
      "sequences per forward/backward; gradients accumulate over a minibatch (0: whole minibatch)");
    v("activation_checkpointing", activation_checkpointing,
      "recompute each decoder layer in the backward pass instead of keeping its activations");
  }
};

struct GrpoRecipe {
  std::int64_t seed = 1;
  std::string run_dir = "runs/quickstart";
  std::int64_t steps = 20;
  std::int64_t eval_every = 10;
  std::int64_t checkpoint_every = 10;  // 0: only at the end
  ModelSection model;
  DataSection data;
  RolloutSection rollout;
  EvalSection eval;
  std::vector<RewardSpec> rewards = {{"math", 1.0, nlohmann::json::object()}};
  GrpoSection grpo;
  OptimSection optim;
  SftSection sft;
  TrainSection train;
  template <class V>
  void fields(V& v) {
    v("seed", seed, "seed for model init, data order and sampling");
    v("run_dir", run_dir, "output directory (run.db, checkpoints, report.html)");
    v("steps", steps, "RL steps");
    v("eval_every", eval_every, "held-out evaluation period in steps");
    v("checkpoint_every", checkpoint_every, "checkpoint period in steps (0: end only)");
    v("model", model, "policy model");
    v("data", data, "task and prompts");
    v("rollout", rollout, "sampling");
    v("eval", eval, "held-out evaluation sampling");
    v("rewards", rewards, "weighted rewards summed per sample");
    v("grpo", grpo, "policy loss");
    v("optim", optim, "optimizer");
    v("sft", sft, "supervised warm-up");
    v("train", train, "device, precision and memory");
  }
};

// Reads a recipe (defaults = quickstart), applies --set overrides, validates enumerations.
GrpoRecipe load_recipe(const std::string& path, const std::vector<std::string>& overrides);
nlohmann::json recipe_to_json(const GrpoRecipe& recipe);

}  // namespace ponder::train
