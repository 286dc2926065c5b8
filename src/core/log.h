// Minimal leveled logging to stderr, shared by every command so output looks the same.
// Level comes from PONDER_LOG (debug|info|warn|error); default info.
#pragma once

#include <fmt/core.h>

#include <string_view>

namespace ponder::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

Level current_level();
// Overrides PONDER_LOG for the rest of the process (e.g. ranks other than 0 show errors only).
void set_level(Level level);
void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= Level::kDebug)
    write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= Level::kInfo)
    write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (current_level() <= Level::kWarn)
    write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ponder::log
