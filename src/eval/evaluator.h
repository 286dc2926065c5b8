// Benchmark evaluation shared by `ponder eval` and the trainer's periodic evaluation: k samples
// per item on the rollout engine, rewards on the CPU pool while later chunks generate, metrics
// (pass@1 over k samples, pass@k, maj@k, length, truncation) and every sample in the run store.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "datasets/task.h"
#include "engine/rollout_engine.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "rewards/reward.h"
#include "store/run_store.h"

namespace ponder::eval {

// What is evaluated: items (question = the user message, reference = what the reward checks)
// and the reward that scores them, both owned by the caller. A sample is correct when its
// reward is >= 1.
struct EvalTask {
  std::string name;
  std::span<const datasets::Example> items;
  const rewards::Reward* reward = nullptr;
  bool majority = false;  // maj@k from the answers the reward extracts (details "extracted")
};

struct EvalOptions {
  std::int64_t n = 1;  // samples per item
  engine::SamplingParams sampling{.temperature = 0.6, .top_p = 0.95, .max_tokens = 32768};
  std::vector<std::int64_t> ks;       // pass@k / maj@k; empty: 1, 2, 4, ... < n, and n
  std::int64_t chunk_samples = 1024;  // samples per generate call; scoring overlaps the next
  std::int64_t step = 0;              // run store step of the metrics and samples
  // Index of items[0] in the whole task when items are one process's shard of it: item i is
  // sampled with seed sampling.seed + f(first_item + i), as in a one-process evaluation.
  std::size_t first_item = 0;
  bool show_progress = true;
};

// The model side: prompts are render_chat(format, {user: question}) encoded by the tokenizer.
struct Generator {
  engine::RolloutEngine& engine;
  const model::Tokenizer& tokenizer;
  model::ChatFormat format;
};

// One model output. tokens is unknown for predictions given without a count.
struct Response {
  std::string text;
  std::optional<std::int64_t> tokens;
  std::string finish_reason = "stop";  // "stop" or "length" (truncated)
};

struct SampleResult {
  Response response;
  double reward = 0;
  bool correct = false;
  nlohmann::json details;
};

struct ItemResult {
  std::string id;
  std::vector<SampleResult> samples;
};

// metrics: pass@1, pass@k, maj@k (fractions), reward_mean, length_tokens (when every sample has
// a token count), truncated (fraction), items, samples (in all), seconds.
struct TaskResult {
  std::string task;
  std::vector<ItemResult> items;
  std::map<std::string, double> metrics;
};

// Generates options.n samples per item and scores them; logs metrics as "eval/<task>/<name>" and
// every sample (split "eval", group = item index) to `store` when given.
TaskResult evaluate(const Generator& generator, const EvalTask& task, const EvalOptions& options,
                    ThreadPool& pool, store::RunStore* store);

// Scores given responses instead of generating: responses[i] are item i's samples (at least one
// each; counts may differ). ks default to the smallest count; a k above it is an error.
TaskResult evaluate_responses(const EvalTask& task,
                              const std::vector<std::vector<Response>>& responses,
                              const EvalOptions& options, ThreadPool& pool, store::RunStore* store);

// Metrics of scored items (see TaskResult); ks as in EvalOptions with n = the smallest item's
// sample count (a larger k is an error).
std::map<std::string, double> task_metrics(std::span<const ItemResult> items,
                                           std::vector<std::int64_t> ks, bool majority);

}  // namespace ponder::eval
