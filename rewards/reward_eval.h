// `ponder reward eval`: scores every row of a JSONL file with a reward (and optionally a second
// configuration side by side) on a thread pool, and summarises accuracy, latency and throughput.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "rewards/reward.h"

namespace ponder::rewards {

struct RewardSpec {
  std::string name;
  nlohmann::json options = nlohmann::json::object();
  std::string title() const;  // "math" or "math {"relative_tolerance":0.01}"
};

struct RewardEvalOptions {
  std::filesystem::path data;
  RewardSpec reward;
  std::optional<RewardSpec> compare;
  // Empty fields are looked up by their usual names (see reward_eval.cc); a field given here
  // must exist in every row. Without a gold field the whole row is the reference.
  std::string pred_field, gold_field, label_field, category_field;
  std::size_t limit = 0;    // 0: every row
  std::size_t threads = 0;  // 0: one per core
};

// One row as scored: the sample, its label/category, and each configuration's result.
struct RowResult {
  std::size_t line = 0;
  Sample sample;
  std::optional<bool> label;
  std::string category;
  std::vector<RewardResult> results;  // [reward, compare]
  std::vector<double> millis;
};

struct Confusion {
  std::size_t tp = 0, fp = 0, fn = 0, tn = 0;
  void add(bool predicted, bool actual);
  std::size_t total() const { return tp + fp + fn + tn; }
};

struct GroupStats {
  std::size_t rows = 0;
  double reward_sum = 0;
  Confusion vs_label;
};

// Summary of one configuration over all rows.
struct RewardStats {
  std::string title;
  GroupStats all;
  std::map<std::string, GroupStats> by_category;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  double rows_per_second = 0;
};

struct RewardEvalResult {
  std::string pred_field, label_field, category_field;  // as resolved
  std::vector<RowResult> rows;
  std::vector<RewardStats> stats;  // [reward, compare]
  Confusion a_vs_b;                // reward passes (as predicted) vs compare passes (actual)
  bool has_labels() const { return !label_field.empty(); }
};

// A reward value counts as a pass above 0.5 (binary rewards: 1).
bool passes(double reward);

// Throws ponder::Error naming FILE:LINE and the field for missing files, rows or fields.
RewardEvalResult run_reward_eval(const RewardEvalOptions& options, const RewardRegistry& registry);
// The human-readable report: metrics with units, confusion tables, categories, disagreements.
std::string format_reward_eval(const RewardEvalResult& result, std::size_t max_listed);
// Writes the rows (with reward details) and the metrics into RUN_DIR/run.db for `ponder report`.
void write_reward_eval_run(const RewardEvalResult& result, const RewardEvalOptions& options,
                           const std::filesystem::path& run_dir);

}  // namespace ponder::rewards
