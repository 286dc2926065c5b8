// `ponder reward eval`: the library on labelled rows (accuracy, confusion, categories, latency,
// --compare), and the binary end to end on HumanEval (code reward) and MATH-500 (math reward),
// with its run directory rendered by `ponder report`, and one-line errors for bad input.
#include "rewards/reward_eval.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>

#include "core/json_file.h"
#include "rewards/builtin.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder::rewards {
namespace {

using nlohmann::json;

const auto ponder = testing_util::run_ponder;

// MATH-500 rows with integer answers turned into labelled predictions: even rows give the gold
// answer (label 1), odd rows another problem's different answer (label 0); every third row
// states it without \boxed{}, so only the last-number fallback finds it.
std::filesystem::path labelled_math_rows(const testing_util::ScratchDir& dir, int count) {
  std::vector<json> rows;
  for_each_jsonl(testing_util::data_root() / "math/test.jsonl", [&](const json& r, std::size_t) {
    const std::string answer = r["answer"];
    if (answer.find_first_not_of("0123456789") == std::string::npos) rows.push_back(r);
  });
  const auto path = dir / "labelled.jsonl";
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) {
    const json& r = rows[i];
    const bool correct = i % 2 == 0;
    std::string answer = r["answer"];
    if (!correct) answer = std::to_string(std::stoll(answer) + 1 + i);
    const std::string completion =
        i % 3 == 0 ? "I am not sure. Final: " + answer : "So \\boxed{" + answer + "}.";
    out << json{{"problem", r["problem"]},
                {"answer", r["answer"]},
                {"level", r["level"]},
                {"completion", completion},
                {"label", correct ? 1 : 0}}
               .dump()
        << "\n";
  }
  return path;
}

TEST(RewardEval, AccuracyConfusionCategoriesAndLatencyOnLabelledRows) {
  testing_util::ScratchDir dir("reward_eval_lib");
  RewardEvalOptions o{.data = labelled_math_rows(dir, 60), .reward = {"math"}, .threads = 2};
  const auto result = run_reward_eval(o, builtin_rewards());
  ASSERT_EQ(result.rows.size(), 60u);
  EXPECT_EQ(result.pred_field, "completion");
  EXPECT_EQ(result.label_field, "label");
  EXPECT_EQ(result.category_field, "level");
  const auto& s = result.stats.at(0);
  EXPECT_EQ(s.all.vs_label.tp, 30u) << format_reward_eval(result, 10);
  EXPECT_EQ(s.all.vs_label.tn, 30u);
  EXPECT_GE(s.by_category.size(), 3u);
  EXPECT_LE(s.p50_ms, s.p90_ms);
  EXPECT_LE(s.p90_ms, s.p99_ms);
  EXPECT_LE(s.p99_ms, s.max_ms);
  EXPECT_GT(s.rows_per_second, 0);
  const std::string text = format_reward_eval(result, 5);
  for (const char* part : {"accuracy vs 'label'", "100.00 % (60/60)", "rows/s", " ms",
                           "confusion: math vs 'label'", "per category ('level')"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
}

TEST(RewardEval, CompareListsTheRowsWhereConfigurationsDiffer) {
  testing_util::ScratchDir dir("reward_eval_compare");
  RewardEvalOptions o{.data = labelled_math_rows(dir, 60),
                      .reward = {"math"},
                      .compare = RewardSpec{"math", {{"last_number_fallback", false}}}};
  const auto result = run_reward_eval(o, builtin_rewards());
  // Without the last-number fallback, exactly the correct rows without \boxed{} stop passing.
  std::size_t unboxed_correct = 0;
  for (int i = 0; i < 60; ++i) unboxed_correct += i % 2 == 0 && i % 3 == 0;
  EXPECT_EQ(result.a_vs_b.fp, unboxed_correct);  // reward passes, compare fails
  EXPECT_EQ(result.a_vs_b.fn, 0u);
  EXPECT_EQ(result.stats.at(1).all.vs_label.tp, 30u - unboxed_correct);
  const std::string text = format_reward_eval(result, 100);
  EXPECT_NE(
      text.find("rows where the two configurations differ: " + std::to_string(unboxed_correct)),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("no answer found in the completion"), std::string::npos) << text;
}

TEST(RewardEvalCli, HumanEvalCanonicalSolutionsAllScoreOneAndTheRunRenders) {
  testing_util::ScratchDir dir("reward_eval_code");
  const auto run_dir = dir / "run";
  const auto r = ponder("reward eval --reward code --options '{\"style\":\"humaneval\"}' --data " +
                        (testing_util::data_root() / "humaneval/HumanEval.jsonl").string() +
                        " --pred-field canonical_solution --out " + run_dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("164 rows"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("mean reward                   1.0000"), std::string::npos) << r.output;
  {
    store::RunStore store(run_dir);
    const auto rows = store.rollouts();
    ASSERT_EQ(rows.size(), 164u);
    for (const auto& row : rows) EXPECT_EQ(row.reward, 1.0) << row.reward_details.dump();
    EXPECT_EQ(store.run_info()->kind, "reward-eval");
  }
  const auto report = ponder("report " + run_dir.string());
  ASSERT_EQ(report.exit_code, 0) << report.output;
  const std::string html = read_text_file(run_dir / "report.html");
  EXPECT_NE(html.find("reward_eval/rows_per_s"), std::string::npos);
  EXPECT_NE(html.find("has_close_elements"), std::string::npos);
}

TEST(RewardEvalCli, MathOnMath500SolutionsWithCompare) {
  const auto r = ponder("reward eval --reward math --data " +
                        (testing_util::data_root() / "math/test.jsonl").string() +
                        " --pred-field solution --gold-field answer --compare math"
                        " --compare-options '{\"last_number_fallback\": false}'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("500 rows, prediction field 'solution'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("per category ('level')"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("agreement between the two: 100.00 % (500/500)"), std::string::npos)
      << r.output;
  const auto mean = r.output.find("mean reward");
  ASSERT_NE(mean, std::string::npos);
  EXPECT_GE(std::stod(r.output.substr(r.output.find_first_of("01", mean + 11))), 0.998) << r.output;
}

TEST(RewardEvalCli, BadInputGivesOneLineErrors) {
  testing_util::ScratchDir dir("reward_eval_errors");
  std::ofstream(dir / "rows.jsonl") << R"({"completion": "\\boxed{1}", "answer": "1"})"
                                    << "\n"
                                    << R"({"answer": "2"})"
                                    << "\n";
  const std::string data = (dir / "rows.jsonl").string();
  const std::pair<std::string, std::string> cases[] = {
      {"--reward math --data /nonexistent.jsonl",
       "ponder: error: /nonexistent.jsonl: no such data file\n"},
      {"--reward math --data " + data + " --pred-field nope",
       "ponder: error: " + data + ":1: no field 'nope' (the prediction)\n"},
      {"--reward math --data " + data,
       "ponder: error: " + data + ":2: no field 'completion' (the prediction)\n"},
      {"--reward math --data " + data + " --gold-field gold",
       "ponder: error: " + data + ":1: no field 'gold' (the gold answer)\n"},
      {"--reward nope --data " + data,
       "ponder: error: reward 'nope': unknown reward; known rewards: code, countdown, format, "
       "math, overlong\n"},
  };
  for (const auto& [args, expected] : cases) {
    const auto r = ponder("reward eval " + args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_EQ(r.output, expected) << args;
  }
  const auto bad_json = ponder("reward eval --reward math --data " + data + " --options '{x'");
  EXPECT_EQ(bad_json.exit_code, 1);
  EXPECT_TRUE(bad_json.output.starts_with("ponder: error: --options")) << bad_json.output;
}

}  // namespace
}  // namespace ponder::rewards
