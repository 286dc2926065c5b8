#include "core/progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/log.h"

namespace ponder {
namespace {

bool stderr_is_terminal() {
  const char* force = std::getenv("PONDER_PROGRESS");
  if (force && std::string(force) == "plain") return false;
  return isatty(fileno(stderr)) != 0;
}

}  // namespace

std::string format_duration(double seconds) {
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  const auto total = static_cast<long>(seconds);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

Progress::Progress(std::string label, std::int64_t total, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      terminal_(stderr_is_terminal()),
      out_(stderr),
      start_(std::chrono::steady_clock::now()),
      last_render_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(std::int64_t n) { set(done_ + n); }

void Progress::set(std::int64_t done) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  // A terminal redraws often; a log gets a line every 10 s so CI output stays readable.
  const auto period = terminal_ ? std::chrono::milliseconds(100) : std::chrono::seconds(10);
  if (now - last_render_ >= period) render(false);
}

void Progress::resume_at(std::int64_t done) { done_ = resumed_ = done; }

void Progress::set_note(std::string note) { note_ = std::move(note); }

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  render(true);
}

void Progress::render(bool final) {
  if (log::current_level() > log::Level::kInfo) return;
  last_render_ = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(last_render_ - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done_ - resumed_) / elapsed : 0.0;
  std::string counts = total_ > 0 ? fmt::format("{}/{} {}", done_, total_, unit_)
                                  : fmt::format("{} {}", done_, unit_);
  std::string timing = fmt::format("{:.2f} {}/s, {}", rate, unit_, format_duration(elapsed));
  if (total_ > 0 && rate > 0 && done_ < total_)
    timing += ", ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  const std::string note = note_.empty() ? "" : "  " + note_;
  if (!terminal_) {
    fmt::print(out_, "{}: {} ({}){}\n", label_, counts, timing, note);
    std::fflush(out_);
    return;
  }
  std::string bar;
  if (total_ > 0) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * std::min<double>(1.0, double(done_) / total_));
    bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "] ";
  }
  fmt::print(out_, "\r\033[K{} {}{} ({}){}", label_, bar, counts, timing, note);
  if (final) fmt::print(out_, "\n");
  std::fflush(out_);
}

}  // namespace ponder
