// Progress reporting for long work (load, generate, train, eval): a live bar on a terminal,
// plain periodic lines otherwise (CI logs, pipes), both with rate and ETA; nothing when the log
// level hides info (PONDER_LOG=warn|error, ranks other than 0).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace ponder {

class Progress {
 public:
  // total == 0 means unknown length (no percentage or ETA). unit names what is counted.
  Progress(std::string label, std::int64_t total, std::string unit = "it");
  ~Progress();

  void advance(std::int64_t n = 1);
  void set(std::int64_t done);
  // Work finished before this process (a resumed run): counted as done, left out of the rate.
  void resume_at(std::int64_t done);
  // Short status shown after the counters, e.g. "reward 0.41".
  void set_note(std::string note);
  void finish();

 private:
  void render(bool final);

  std::string label_;
  std::string unit_;
  std::string note_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  std::int64_t resumed_ = 0;
  bool terminal_;
  bool finished_ = false;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_render_;
};

// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

}  // namespace ponder
