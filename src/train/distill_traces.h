// `ponder distill` step 1: rejection-sampled traces. The teacher generates n answers per prompt
// on the rollout engine, rule rewards keep the correct ones, duplicates are removed, and the
// survivors become an SFT dataset (chat jsonl) with each trace's provenance.
#pragma once

#include <filesystem>
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
    v("n", n, "teacher samples per prompt");
    v("temperature", temperature, "sampling temperature");
    v("top_p", top_p, "nucleus sampling mass");
    v("max_tokens", max_tokens, "response length limit in tokens (truncated answers are dropped)");
    v("prompts_per_batch", prompts_per_batch, "prompts per engine generate call");
  }
};

struct DistillRecipe {
  std::int64_t seed = 1;
  std::string run_dir = "runs/distill";
  std::string output;  // empty: RUN_DIR/traces.jsonl
  ModelSection teacher;
  DataSection data;              // task and prompts (the train split is sampled)
  std::int64_t max_prompts = 0;  // 0: every training prompt
  TraceSamplingSection sampling;
  std::vector<RewardSpec> rewards = {{"math", 1.0, nlohmann::json::object()}};
  double min_reward = 1.0;          // a trace is kept when its weighted reward reaches this
  std::int64_t max_per_prompt = 0;  // per question text; 0: every distinct kept trace
  template <class V>
  void fields(V& v) {
    v("seed", seed, "seed for sampling (and arithmetic prompts)");
    v("run_dir", run_dir, "output directory (run.db with every sample, report.html)");
    v("output", output, "SFT jsonl written (empty: RUN_DIR/traces.jsonl)");
    v("teacher", teacher, "teacher model");
    v("data", data, "task and prompts");
    v("max_prompts", max_prompts, "prompts used from the training split (0: all)");
    v("sampling", sampling, "teacher sampling");
    v("rewards", rewards, "weighted rule rewards summed per sample");
    v("min_reward", min_reward, "keep samples whose summed reward is at least this");
    v("max_per_prompt", max_per_prompt, "distinct traces kept per question (0: all)");
  }
};

DistillRecipe load_distill_recipe(const std::string& path,
                                  const std::vector<std::string>& overrides);

struct TraceSummary {
  std::int64_t prompts = 0, samples = 0, accepted = 0, duplicates = 0, kept = 0;
  std::int64_t prompts_with_trace = 0;  // distinct questions
  std::filesystem::path output, report;
};

TraceSummary generate_traces(const DistillRecipe& recipe);

}  // namespace ponder::train
