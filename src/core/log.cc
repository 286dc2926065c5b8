#include "core/log.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace ponder::log {

Level current_level() {
  static const Level level = [] {
    const char* env = std::getenv("PONDER_LOG");
    if (!env) return Level::kInfo;
    if (!std::strcmp(env, "debug")) return Level::kDebug;
    if (!std::strcmp(env, "warn")) return Level::kWarn;
    if (!std::strcmp(env, "error")) return Level::kError;
    return Level::kInfo;
  }();
  return level;
}

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
