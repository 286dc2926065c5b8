#include "store/run_store.h"

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "store/sqlite.h"

namespace ponder::store {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, kind TEXT NOT NULL, recipe TEXT NOT NULL, seed INTEGER NOT NULL,
  git_revision TEXT NOT NULL, versions TEXT NOT NULL, started_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (
  step INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_by_name ON metrics (name, step);
CREATE TABLE IF NOT EXISTS rollouts (
  step INTEGER NOT NULL, split TEXT NOT NULL, grp INTEGER NOT NULL, prompt TEXT NOT NULL,
  completion TEXT NOT NULL, reward REAL NOT NULL, details TEXT NOT NULL, tokens INTEGER NOT NULL,
  finish_reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rollouts_by_step ON rollouts (step);
CREATE TABLE IF NOT EXISTS checkpoints (
  step INTEGER NOT NULL, path TEXT NOT NULL, checksum TEXT NOT NULL);
)sql";

using Write = std::function<void(Database&)>;

int schema_version(Database& db) {
  Statement exists(db, "SELECT count(*) FROM sqlite_master WHERE name = 'schema_info'");
  exists.step();
  if (exists.column_int(0) == 0) return 0;
  Statement version(db, "SELECT max(version) FROM schema_info");
  return version.step() ? static_cast<int>(version.column_int(0)) : 0;
}

}  // namespace

struct RunStore::Impl {
  std::filesystem::path db_path;
  Database writer_db;
  mutable std::mutex reader_mutex;
  mutable Database reader_db;

  std::mutex mutex;
  std::condition_variable wake;
  std::condition_variable committed;
  std::deque<Write> pending;
  std::uint64_t queued = 0;
  std::uint64_t done = 0;
  std::string failure;  // first error of the writer thread, reported to the caller
  bool stopping = false;
  std::thread writer;

  explicit Impl(const std::filesystem::path& path)
      : db_path(path), writer_db(path.string()), reader_db(path.string()) {}

  void enqueue(Write write) {
    {
      std::lock_guard lock(mutex);
      if (!failure.empty()) throw Error(failure);
      pending.push_back(std::move(write));
      ++queued;
    }
    wake.notify_one();
  }

  void run_writer() {
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return stopping || !pending.empty(); });
      if (pending.empty()) return;
      std::deque<Write> batch;
      batch.swap(pending);
      lock.unlock();
      commit(batch);
      lock.lock();
      done += batch.size();
      committed.notify_all();
    }
  }

  // One transaction per batch: either the whole batch is on disk or none of it.
  void commit(std::deque<Write>& batch) {
    try {
      writer_db.exec("BEGIN IMMEDIATE");
      for (auto& write : batch) write(writer_db);
      writer_db.exec("COMMIT");
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex);
      if (failure.empty()) failure = std::string("run store write failed: ") + e.what();
      try {
        writer_db.exec("ROLLBACK");
      } catch (const std::exception&) {
      }
    }
  }
};

RunStore::RunStore(const std::filesystem::path& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) throw Error(run_dir.string() + ": cannot create run directory: " + ec.message());
  impl_ = std::make_unique<Impl>(run_dir / "run.db");
  Database& db = impl_->writer_db;
  try {
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("PRAGMA synchronous=NORMAL");
    const int version = schema_version(db);
    if (version > kSchemaVersion)
      throw Error("schema version " + std::to_string(version) + " is newer than this ponder (" +
                  std::to_string(kSchemaVersion) + "); upgrade ponder");
    db.exec(kSchema);
    if (version == 0)
      db.exec("INSERT INTO schema_info (version) VALUES (" + std::to_string(kSchemaVersion) + ")");
  } catch (const Error& e) {
    throw Error(impl_->db_path.string() + ": not a usable ponder run database: " + e.what());
  }
  impl_->writer = std::thread([impl = impl_.get()] { impl->run_writer(); });
}

RunStore::~RunStore() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  impl_->writer.join();
}

std::filesystem::path RunStore::path() const { return impl_->db_path; }

void RunStore::begin_run(const RunInfo& info) {
  impl_->enqueue([info](Database& db) {
    Statement insert(db,
                     "INSERT INTO runs (kind, recipe, seed, git_revision, versions, started_at) "
                     "VALUES (?, ?, ?, ?, ?, datetime('now'))");
    insert.bind(1, info.kind)
        .bind(2, info.recipe.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        .bind(3, info.seed);
    insert.bind(4, info.git_revision).bind(5, info.versions.dump()).step();
  });
}

void RunStore::log_metrics(std::int64_t step, const std::map<std::string, double>& values) {
  impl_->enqueue([step, values](Database& db) {
    Statement insert(db, "INSERT INTO metrics (step, name, value) VALUES (?, ?, ?)");
    for (const auto& [name, value] : values) {
      insert.bind(1, step).bind(2, name).bind(3, value).step();
      insert.reset();
    }
  });
}

void RunStore::log_rollouts(std::span<const RolloutRecord> rollouts) {
  std::vector<RolloutRecord> copy(rollouts.begin(), rollouts.end());
  impl_->enqueue([rows = std::move(copy)](Database& db) {
    Statement insert(db,
                     "INSERT INTO rollouts (step, split, grp, prompt, completion, reward, details, "
                     "tokens, finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : rows) {
      insert.bind(1, r.step).bind(2, r.split).bind(3, r.group).bind(4, r.prompt);
      insert.bind(5, r.completion)
          .bind(6, r.reward)
          .bind(7, r.reward_details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      insert.bind(8, r.tokens).bind(9, r.finish_reason).step();
      insert.reset();
    }
  });
}

void RunStore::log_checkpoint(const CheckpointRecord& checkpoint) {
  impl_->enqueue([checkpoint](Database& db) {
    Statement insert(db, "INSERT INTO checkpoints (step, path, checksum) VALUES (?, ?, ?)");
    insert.bind(1, checkpoint.step).bind(2, checkpoint.path).bind(3, checkpoint.checksum).step();
  });
}

void RunStore::truncate_after(std::int64_t step) {
  impl_->enqueue([step](Database& db) {
    for (const char* table : {"metrics", "rollouts", "checkpoints"}) {
      Statement erase(db, std::string("DELETE FROM ") + table + " WHERE step > ?");
      erase.bind(1, step).step();
    }
  });
  flush();
}

void RunStore::flush() {
  std::unique_lock lock(impl_->mutex);
  const std::uint64_t target = impl_->queued;
  impl_->committed.wait(lock, [&] { return impl_->done >= target || !impl_->failure.empty(); });
  if (!impl_->failure.empty()) throw Error(impl_->failure);
}

std::optional<RunInfo> RunStore::run_info() const {
  std::lock_guard lock(impl_->reader_mutex);
  Statement query(
      impl_->reader_db,
      "SELECT kind, recipe, seed, git_revision, versions FROM runs ORDER BY id LIMIT 1");
  if (!query.step()) return std::nullopt;
  RunInfo info;
  info.kind = query.column_text(0);
  info.recipe = nlohmann::json::parse(query.column_text(1), nullptr, false);
  info.seed = query.column_int(2);
  info.git_revision = query.column_text(3);
  info.versions = nlohmann::json::parse(query.column_text(4), nullptr, false);
  return info;
}

std::vector<MetricPoint> RunStore::metrics() const {
  std::lock_guard lock(impl_->reader_mutex);
  Statement query(impl_->reader_db, "SELECT step, name, value FROM metrics ORDER BY name, step");
  std::vector<MetricPoint> points;
  while (query.step())
    points.push_back({query.column_int(0), query.column_text(1), query.column_double(2)});
  return points;
}

std::vector<RolloutRecord> RunStore::rollouts(std::optional<std::int64_t> step) const {
  std::lock_guard lock(impl_->reader_mutex);
  Statement query(
      impl_->reader_db,
      std::string("SELECT step, split, grp, prompt, completion, reward, details, tokens, "
                  "finish_reason FROM rollouts") +
          (step ? " WHERE step = ?" : "") + " ORDER BY rowid");
  if (step) query.bind(1, *step);
  std::vector<RolloutRecord> rows;
  while (query.step()) {
    RolloutRecord r;
    r.step = query.column_int(0);
    r.split = query.column_text(1);
    r.group = query.column_int(2);
    r.prompt = query.column_text(3);
    r.completion = query.column_text(4);
    r.reward = query.column_double(5);
    r.reward_details = nlohmann::json::parse(query.column_text(6), nullptr, false);
    r.tokens = query.column_int(7);
    r.finish_reason = query.column_text(8);
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<CheckpointRecord> RunStore::checkpoints() const {
  std::lock_guard lock(impl_->reader_mutex);
  Statement query(impl_->reader_db, "SELECT step, path, checksum FROM checkpoints ORDER BY step");
  std::vector<CheckpointRecord> rows;
  while (query.step())
    rows.push_back({query.column_int(0), query.column_text(1), query.column_text(2)});
  return rows;
}

}  // namespace ponder::store
