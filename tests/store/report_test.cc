#include "store/report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/error.h"

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

// Two runs that differ in precision: sft/loss at steps -3..-1 (fp8's 10% higher), reward/mean at
// steps 1..20 (fp8's half), and a metric only the fp8 run logs.
class CompareTest : public testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("ponder_compare_" + std::to_string(getpid()));
    std::filesystem::remove_all(root_);
    for (const std::string name : {"bf16", "fp8"}) {
      RunStore store(root_ / name);
      store.begin_run(
          {.kind = "train",
           .recipe = {{"seed", 1}, {"train", {{"precision", name}, {"device", "cuda"}}}},
           .seed = 1});
      const double scale = name == "fp8" ? 1.1 : 1.0;
      for (int step = -3; step < 0; ++step) store.log_metrics(step, {{"sft/loss", -step * scale}});
      for (int step = 1; step <= 20; ++step)
        store.log_metrics(step, {{"reward/mean", step / (name == "fp8" ? 40.0 : 20.0)}});
      if (name == "fp8") store.log_metrics(1, {{"fp8/only", 5.0}});
      store.flush();
    }
    html_ = read(write_comparison({root_ / "bf16", root_ / "fp8"}, root_ / "compare.html"));
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  static std::string read(const std::filesystem::path& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  // The chart titled `metric`: its <svg> element.
  std::string chart(const std::string& metric) const {
    const auto title = html_.find(">" + metric + "</text>");
    const auto begin = html_.rfind("<svg", title);
    return html_.substr(begin, html_.find("</svg>", title) - begin);
  }
  std::filesystem::path root_;
  std::string html_;
};

TEST_F(CompareTest, OneChartPerMetricWithALinePerRun) {
  EXPECT_EQ(count(html_, "<svg class=\"chart\""), 3u);
  EXPECT_EQ(count(html_, "<polyline class=\"series\""), 6u);
  EXPECT_NE(chart("sft/loss").find(">bf16: last 1</text>"), std::string::npos);
  EXPECT_NE(chart("sft/loss").find(">fp8: last 1.1</text>"), std::string::npos);
  EXPECT_NE(chart("reward/mean").find(">fp8: last 0.5</text>"), std::string::npos);
  EXPECT_NE(chart("fp8/only").find(">bf16: last -</text>"), std::string::npos);
  EXPECT_NE(html_.find("<title>ponder runs bf16 vs fp8</title>"), std::string::npos);
}

TEST_F(CompareTest, RunsShareTheValueAxis) {
  // Every point of both runs' sft/loss lines must lie on one affine map value -> pixel row.
  const std::string svg = chart("sft/loss");
  const std::regex polyline("<polyline[^>]*points=\"([^\"]*)\"");
  const std::vector<double> values = {3, 2, 1, 3.3, 2.2, 1.1};
  std::vector<double> rows;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), polyline);
       it != std::sregex_iterator(); ++it) {
    std::istringstream points((*it)[1].str());
    double x, y;
    char comma;
    while (points >> x >> comma >> y) rows.push_back(y);
  }
  ASSERT_EQ(rows.size(), values.size());
  const double slope = (rows[2] - rows[0]) / (values[2] - values[0]);
  EXPECT_LT(slope, 0);  // larger values higher up
  for (std::size_t i = 0; i < values.size(); ++i)
    EXPECT_NEAR(rows[i], rows[0] + slope * (values[i] - values[0]), 0.11) << i;
}

TEST_F(CompareTest, TablesShowRecipeDifferencesAndFinalValues) {
  EXPECT_NE(html_.find("<tr><td>train.precision</td><td>&quot;bf16&quot;</td>"
                       "<td>&quot;fp8&quot;</td></tr>"),
            std::string::npos);
  EXPECT_EQ(html_.find("<td>train.device</td>"), std::string::npos);  // equal fields are left out
  // Means of the last 10 values: sft/loss 2 vs 2.2 (all 3 steps); reward/mean over steps 11-20:
  // 155/200 = 0.775 vs 0.3875.
  EXPECT_NE(html_.find("<tr><td>sft/loss</td><td>2</td><td>2.2 (+10.00%)</td></tr>"),
            std::string::npos);
  EXPECT_NE(html_.find("<tr><td>reward/mean</td><td>0.775</td><td>0.3875 (-50.00%)</td></tr>"),
            std::string::npos);
  EXPECT_NE(html_.find("<tr><td>fp8/only</td><td>-</td><td>5</td></tr>"), std::string::npos);
}

TEST_F(CompareTest, NeedsTwoRunDirectories) {
  EXPECT_THROW(write_comparison({root_ / "bf16"}, root_ / "x.html"), Error);
  EXPECT_THROW(write_comparison({root_ / "bf16", root_ / "missing"}, root_ / "x.html"), Error);
  EXPECT_FALSE(std::filesystem::exists(root_ / "missing" / "run.db"));  // nothing created
}

TEST_F(CompareTest, ChromiumDrawsBothRunsLines) {
  if (std::system("command -v chromium > /dev/null") != 0)
    GTEST_FAIL() << "chromium is not installed; scripts/bootstrap installs it";
  const auto png = root_ / "shot.png";
  run_command(
      "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900 "
      "--screenshot=" +
      png.string() + " file://" + (root_ / "compare.html").string() + " 2>/dev/null");
  ASSERT_TRUE(std::filesystem::exists(png)) << "chromium produced no screenshot";
  const char* python = std::getenv("PONDER_PYTHON");
  const std::string stats = run_command(std::string(python && *python ? python : "python3") + " " +
                                        PNG_STATS_SCRIPT + " " + png.string() + " d04020");
  const auto j = nlohmann::json::parse(stats);
  EXPECT_GT(j["line_colour"].get<int>(), 300) << stats;        // the first run's lines (#2060c0)
  EXPECT_GT(j["colours"]["d04020"].get<int>(), 300) << stats;  // the second run's
}

}  // namespace
}  // namespace ponder::store
