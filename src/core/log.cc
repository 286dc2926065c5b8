#include "core/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ponder::log {

namespace {

Level level_from_env() {
  const char* env = std::getenv("PONDER_LOG");
  if (!env) return Level::kInfo;
  if (!std::strcmp(env, "debug")) return Level::kDebug;
  if (!std::strcmp(env, "warn")) return Level::kWarn;
  if (!std::strcmp(env, "error")) return Level::kError;
  return Level::kInfo;
}

std::atomic<Level>& level_setting() {
  static std::atomic<Level> level{level_from_env()};
  return level;
}

}  // namespace

Level current_level() { return level_setting().load(std::memory_order_relaxed); }

void set_level(Level level) { level_setting().store(level, std::memory_order_relaxed); }

void write(Level level, std::string_view message) {
  static std::mutex mutex;
  static const char* const kNames[] = {"debug", "info", "warn", "error"};
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "[%s %s] %.*s\n", stamp, kNames[static_cast<int>(level)],
               static_cast<int>(message.size()), message.data());
}

}  // namespace ponder::log
