// The `ponder distill` recipe: every field with its default and help text in one place. One
// recipe type serves the three modes (teacher traces, logit distillation, on-policy distillation).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace ponder::train {

struct TraceSamplingSection {
  std::int64_t n = 8;
  double temperature = 1.0;
  double top_p = 1.0;
  std::int64_t max_tokens = 256;
  std::int64_t prompts_per_batch = 64;  // prompts per generate call
  template <class V>
  void fields(V& v) {
    v("n", n, "samples per prompt (teacher: traces and logit-cache sequences; student: on_policy)");
    v("temperature", temperature, "sampling temperature");
    v("top_p", top_p, "nucleus sampling mass");
    v("max_tokens", max_tokens, "response length limit in tokens (also the held-out evaluation's)");
    v("prompts_per_batch", prompts_per_batch, "prompts per engine generate call");
  }
};

struct DistillTrainSection {
  std::int64_t steps = 300;
  std::int64_t batch_size = 32;  // logits: cached sequences per step; on_policy: prompts per step
  std::int64_t eval_every = 0;   // 0: held-out accuracy before and after only
  template <class V>
  void fields(V& v) {
    v("steps", steps, "student optimizer steps");
    v("batch_size", batch_size,
      "sequences per step (logits: from the cache; on_policy: prompts, each sampled sampling.n "
      "times)");
    v("eval_every", eval_every, "student held-out accuracy period in steps (0: before/after only)");
  }
};

struct DistillRecipe {
  std::int64_t seed = 1;
  std::string mode = "traces";  // traces | logits | on_policy
  std::string run_dir = "runs/distill";
  std::string output;  // traces: empty = RUN_DIR/traces.jsonl
  ModelSection teacher;
  ModelSection student{.preset = "tiny-llama"};
  DataSection data;              // task and prompts (the train split is sampled)
  std::int64_t max_prompts = 0;  // 0: every training prompt (arithmetic: 1000)
  TraceSamplingSection sampling;
  std::vector<RewardSpec> rewards = {{"math", 1.0, nlohmann::json::object()}};
  double min_reward = 1.0;          // a trace is kept when its weighted reward reaches this
  std::int64_t max_per_prompt = 0;  // per question text; 0: every distinct kept trace
  std::string divergence;           // empty: forward_kl for logits, reverse_kl for on_policy
  std::int64_t top_k = 32;
  std::string cache;                    // logits: empty = RUN_DIR/teacher_topk.bin
  std::string cache_dtype = "float16";  // float16 | float32
  DistillTrainSection train;
  OptimSection optim{.lr = 1e-3, .warmup_steps = 10, .schedule = "cosine"};
  EvalSection eval;
  template <class V>
  void fields(V& v) {
    v("seed", seed, "seed for sampling, student init and arithmetic prompts/held-out questions");
    v("mode", mode,
      "traces (rejection-sampled SFT jsonl) | logits (student fits the teacher's cached top-k "
      "log-probs) | on_policy (student samples, teacher scores every token)");
    v("run_dir", run_dir, "output directory (run.db, report.html, cache, student checkpoint)");
    v("output", output, "traces: SFT jsonl written (empty: RUN_DIR/traces.jsonl)");
    v("teacher", teacher, "teacher model");
    v("student", student, "student model (logits, on_policy); must share the teacher's tokenizer");
    v("data", data, "task, prompts and held-out questions");
    v("max_prompts", max_prompts, "prompts used from the training split (0: all)");
    v("sampling", sampling, "sampling of the teacher (traces, logits) or the student (on_policy)");
    v("rewards", rewards, "traces: weighted rule rewards summed per sample");
    v("min_reward", min_reward, "traces: keep samples whose summed reward is at least this");
    v("max_per_prompt", max_per_prompt, "traces: distinct traces kept per question (0: all)");
    v("divergence", divergence,
      "forward_kl | reverse_kl | jsd (empty: forward_kl for logits, reverse_kl for on_policy)");
    v("top_k", top_k, "teacher tokens kept per position; the rest is one tail bucket");
    v("cache", cache,
      "logits: teacher top-k cache file, reused when it exists (empty: RUN_DIR/teacher_topk.bin)");
    v("cache_dtype", cache_dtype, "logits: float16 | float32 for the cached log-probs");
    v("train", train, "student training (logits, on_policy)");
    v("optim", optim, "student optimizer");
    v("eval", eval, "held-out accuracy of teacher and student (same questions, same evaluator)");
  }
};

DistillRecipe load_distill_recipe(const std::string& path,
                                  const std::vector<std::string>& overrides);

// The divergence the recipe names, or the mode's default.
std::string resolved_divergence(const DistillRecipe& recipe);

}  // namespace ponder::train
