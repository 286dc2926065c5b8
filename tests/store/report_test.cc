#include "store/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

namespace ponder::store {
namespace {

std::size_t count(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

std::string run_command(const std::string& command) {
  std::string output;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  pclose(pipe);
  return output;
}

class ReportTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ponder_report_" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    RunStore store(dir_);
    store.begin_run({.kind = "train", .seed = 1});
    for (int step = 0; step < 20; ++step) {
      store.log_metrics(step,
                        {{"reward/mean", step / 20.0}, {"kl", 0.01 * step}, {"entropy", 2.0}});
      std::vector<RolloutRecord> rows;
      for (int i = 0; i < 4; ++i)
        rows.push_back({.step = step,
                        .prompt = "What is 2+2?",
                        .completion = "<b>" + std::to_string(i),
                        .reward = double(i),
                        .reward_details = {{"extracted", i}},
                        .tokens = 3,
                        .finish_reason = "stop"});
      store.log_rollouts(rows);
    }
    store.flush();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ReportTest, HtmlHasAChartPerMetricAndEscapedRollouts) {
  const auto path = write_report(dir_);
  std::ifstream in(path);
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(count(html, "<svg class=\"chart\""), 3u);
  EXPECT_EQ(count(html, "<polyline class=\"series\""), 3u);
  EXPECT_EQ(count(html, "<details class=\"step\">"), 20u);
  EXPECT_NE(html.find("&lt;b&gt;3"), std::string::npos);  // completions are escaped
  EXPECT_EQ(html.find("<b>3"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));  // no external fetches
}

TEST_F(ReportTest, ChromiumRendersTheCharts) {
  if (std::system("command -v chromium > /dev/null") != 0)
    GTEST_FAIL() << "chromium is not installed; scripts/bootstrap installs it";
  const auto html = write_report(dir_);
  const auto png = dir_ / "shot.png";
  const std::string flags =
      "--headless --no-sandbox --disable-gpu --hide-scrollbars "
      "--window-size=1300,900 ";
  run_command("chromium " + flags + "--screenshot=" + png.string() + " file://" + html.string() +
              " 2>/dev/null");
  ASSERT_TRUE(std::filesystem::exists(png)) << "chromium produced no screenshot";
  const char* python = std::getenv("PONDER_PYTHON");
  const std::string stats = run_command(std::string(python && *python ? python : "python3") + " " +
                                        PNG_STATS_SCRIPT + " " + png.string());
  const auto j = nlohmann::json::parse(stats);
  EXPECT_EQ(j["width"], 1300);
  EXPECT_GT(j["non_white"].get<int>(), 20000) << stats;  // charts, text and plot areas drawn
  EXPECT_GT(j["line_colour"].get<int>(), 300) << stats;  // the three series lines are visible

  const std::string dom =
      run_command("chromium " + flags + "--dump-dom file://" + html.string() + " 2>/dev/null");
  EXPECT_EQ(count(dom, "<polyline"), 3u);
}

}  // namespace
}  // namespace ponder::store
