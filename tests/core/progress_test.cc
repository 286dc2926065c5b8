#include "core/progress.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ponder
