// Countdown: every generated puzzle's own solution earns the reward, its target is what Python's
// exact Fraction arithmetic gives for the expression, and the reward rejects each way of cheating.
#include "datasets/countdown.h"

#include <gtest/gtest.h>

#include <fstream>

#include "rewards/builtin.h"
#include "tests/common/test_util.h"

namespace ponder::datasets {
namespace {

double score(const std::string& completion, const nlohmann::json& reference) {
  static const auto reward =
      rewards::builtin_rewards().create("countdown", nlohmann::json::object());
  return reward->score({"", completion, reference, {}}).value;
}

TEST(Countdown, SolutionsScoreOneAndTargetsMatchPythonFractions) {
  const auto puzzles = countdown_examples(11, 400, 4);
  EXPECT_EQ(countdown_examples(11, 400, 4)[321].solution, puzzles[321].solution);
  testing_util::ScratchDir dir("countdown");
  std::ofstream lines(dir / "puzzles.txt");
  for (const auto& p : puzzles) {
    ASSERT_EQ(score(p.solution, p.reference), 1.0) << p.solution;
    ASSERT_EQ(p.reference["numbers"].size(), 4u);
    for (const auto& n : p.reference["numbers"]) ASSERT_TRUE(n >= 1 && n <= 20) << n;
    const auto open = p.solution.rfind("\\boxed{") + 7;
    lines << p.solution.substr(open, p.solution.size() - open - 1) << "\t" << p.reference["target"]
          << "\n";
  }
  lines.close();
  const auto r = testing_util::run_command(
      testing_util::python() +
      " -c \"import sys, fractions, re\n"
      "bad = 0\n"
      "for line in open(sys.argv[1]):\n"
      "    expr, target = line.rstrip('\\n').split('\\t')\n"
      "    value = eval(re.sub(r'(\\d+)', r'fractions.Fraction(\\1)', expr))\n"
      "    bad += value != int(target)\n"
      "print('mismatches', bad)\" " +
      (dir / "puzzles.txt").string() + " 2>&1");
  EXPECT_EQ(r.output, "mismatches 0\n") << r.output;
}

TEST(Countdown, RejectsEveryWayOfMissingThePuzzle) {
  const nlohmann::json ref = {{"numbers", {3, 8, 4}}, {"target", 20}};
  EXPECT_EQ(score("\\boxed{(8 - 3) * 4}", ref), 1.0);
  EXPECT_EQ(score("so the answer is 4 × (8 − 3) = 20", ref), 1.0);
  EXPECT_EQ(score("<think>...</think> \\boxed{(8 - 3) * 4 = 20}", ref), 1.0);
  EXPECT_EQ(score("\\boxed{8 * 4 - 3}", ref), 0.0);          // wrong value (29)
  EXPECT_EQ(score("\\boxed{(8 - 3) * 4 + 0}", ref), 0.0);    // an extra number
  EXPECT_EQ(score("\\boxed{(8 - 3) * (8 - 4)}", ref), 0.0);  // 8 used twice, 3 missing
  EXPECT_EQ(score("\\boxed{20}", ref), 0.0);                 // just the target
  EXPECT_EQ(score("\\boxed{(8 - 3) ^ 4}", ref), 0.0);        // not + - * /
  EXPECT_EQ(score("\\boxed{\\sqrt{8} * 3 + 4}", ref), 0.0);  // not + - * /
  EXPECT_EQ(score("(8 - 3) * 4 = 20", ref), 0.0);            // no final-answer marker
  EXPECT_EQ(score("\\boxed{(8 - 3 * 4}", ref), 0.0);         // unbalanced
  EXPECT_EQ(score("\\boxed{38 - 4}", {{"numbers", {3, 8, 4}}, {"target", 34}}), 0.0);  // 3, 8 glued
  EXPECT_EQ(score("\\boxed{8 / 3 * 3 + 4}", {{"numbers", {8, 3, 3, 4}}, {"target", 12}}), 1.0);
  EXPECT_EQ(score("\\boxed{1 + 2}", {{"numbers", {1, 2}}}), 0.0);  // malformed reference
}

}  // namespace
}  // namespace ponder::datasets
