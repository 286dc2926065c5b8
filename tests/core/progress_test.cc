#include "core/progress.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

namespace ponder {
namespace {

TEST(Progress, FormatsDurationsWithUnits) {
  EXPECT_EQ(format_duration(12.34), "12.3s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3720), "1h02m");
}

TEST(Progress, PlainModePrintsFinalLineWithCounts) {
  setenv("PONDER_PROGRESS", "plain", 1);
  testing::internal::CaptureStderr();
  {
    Progress progress("generate", 4, "tok");
    progress.advance(4);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find("generate: 4/4 tok ("), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

// A resumed run's earlier steps would otherwise inflate the rate (and shrink the ETA) ~40x here.
TEST(Progress, RateOfAResumedRunCountsOnlyItsOwnWork) {
  setenv("PONDER_PROGRESS", "plain", 1);
  testing::internal::CaptureStderr();
  {
    Progress progress("grpo", 40, "step");
    progress.resume_at(38);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    progress.advance();
  }
  const std::string out = testing::internal::GetCapturedStderr();
  const auto counts = out.find("grpo: 39/40 step (");
  ASSERT_NE(counts, std::string::npos) << out;
  const double rate = std::stod(out.substr(counts + std::string("grpo: 39/40 step (").size()));
  EXPECT_GT(rate, 0.0) << out;
  EXPECT_LT(rate, 10.5) << out;  // 1 step in >= 0.1 s
}

}  // namespace
}  // namespace ponder
