// RunStore: the SQLite (WAL) database of one run directory — run info, metrics, every rollout with
// its reward details, checkpoints. Writes go through a background thread in batched transactions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ponder::store {

struct RunInfo {
  std::string kind;  // "train", "sft", "eval", "reward-eval", ...
  nlohmann::json recipe = nlohmann::json::object();
  std::int64_t seed = 0;
  std::string git_revision;
  nlohmann::json versions = nlohmann::json::object();  // ponder, libtorch, cuda, ...
};

struct MetricPoint {
  std::int64_t step = 0;
  std::string name;
  double value = 0.0;
};

struct RolloutRecord {
  std::int64_t step = 0;
  std::string split = "train";  // "train" or "eval"
  std::int64_t group = 0;       // prompt index within the step; samples of one prompt share it
  std::string prompt;
  std::string completion;
  double reward = 0.0;
  nlohmann::json reward_details = nlohmann::json::object();
  std::int64_t tokens = 0;
  std::string finish_reason;
};

struct CheckpointRecord {
  std::int64_t step = 0;
  std::string path;
  std::string checksum;
};

class RunStore {
 public:
  static constexpr int kSchemaVersion = 1;

  // Opens (creating if needed) RUN_DIR/run.db. Fails with a clear error if the file is not a
  // ponder run database or has a newer schema.
  explicit RunStore(const std::filesystem::path& run_dir);
  ~RunStore();
  RunStore(const RunStore&) = delete;
  RunStore& operator=(const RunStore&) = delete;

  void begin_run(const RunInfo& info);
  void log_metrics(std::int64_t step, const std::map<std::string, double>& values);
  void log_rollouts(std::span<const RolloutRecord> rollouts);
  void log_checkpoint(const CheckpointRecord& checkpoint);
  // Deletes metrics, rollouts and checkpoint records after `step` (what a killed run wrote past
  // the checkpoint it is resumed from) and waits until that is committed.
  void truncate_after(std::int64_t step);
  // Blocks until every write queued so far is committed.
  void flush();

  std::optional<RunInfo> run_info() const;
  std::vector<MetricPoint> metrics() const;
  std::vector<RolloutRecord> rollouts(std::optional<std::int64_t> step = std::nullopt) const;
  std::vector<CheckpointRecord> checkpoints() const;
  std::filesystem::path path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ponder::store
