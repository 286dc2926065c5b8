#include "rewards/math_answer.h"

#include <gtest/gtest.h>

#include "rewards/math_rewards.h"

namespace ponder::rewards {
namespace {

TEST(Extraction, FindsEachAnswerForm) {
  EXPECT_EQ(extract_answer("so \\boxed{\\frac{1}{2}} and later \\boxed{x^{2}+\\{1\\}}")->answer,
            "x^{2}+\\{1\\}");
  EXPECT_EQ(extract_answer("work\n#### 1,234")->answer, "1,234");
  EXPECT_EQ(extract_answer("<think>hm</think><answer> 42 </answer>")->method, "answer_tag");
  EXPECT_EQ(extract_answer("Thus the answer is $17$.")->answer, "17");
  EXPECT_EQ(extract_answer("The final answer is $\\$1.25$ total.")->answer, "\\$1.25");
  EXPECT_EQ(extract_answer("The final answer is $90\\text{ square\nunits}$.")->answer,
            "90\\text{ square\nunits}");
  EXPECT_EQ(extract_answer("I got 3 then 5.5 apples")->answer, "5.5");
  EXPECT_FALSE(extract_answer("I got 3", {.last_number_fallback = false}).has_value());
  EXPECT_FALSE(extract_answer("no digits here").has_value());
  EXPECT_FALSE(extract_answer("\\boxed{unbalanced").has_value());  // never throws
}

struct Case {
  const char* predicted;
  const char* gold;
  bool equivalent;
};

TEST(Equivalence, HandWrittenCases) {
  const Case cases[] = {
      {"0.5", "\\frac{1}{2}", true},
      {"1/2", "\\dfrac12", true},
      {"50\\%", "0.5", true},
      {"1,000", "1000", true},
      {"x = 3", "3", true},
      {"3", "4", false},
      {"\\sqrt{8}", "2\\sqrt{2}", true},
      {"\\sqrt[3]{27}", "3", true},
      {"2\\pi", "\\pi \\cdot 2", true},
      {"\\left(1,2\\right)", "(1, 2)", true},
      {"(2,1)", "(1,2)", false},
      {"\\{2,1\\}", "\\{1,2\\}", true},
      {"(1,2]", "(1,2)", false},
      {"x^2+2x+1", "(x+1)^2", true},
      {"x^2+1", "(x+1)^2", false},
      {"10\\text{ cm}", "10", true},
      {"90^\\circ", "90", true},
      {"1 \\text{ or } 2", "2, 1", true},
      {"3.0001", "3", false},
      {"-\\frac{3}{4}", "-0.75", true},
      {"2^{10}", "1024", true},
      {"\\$5.00", "5", true},
      {"", "5", false},
      {"e", "f", false},
      // Matrices (pmatrix / bmatrix), element by element.
      {"\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
       true},
      {"\\begin{pmatrix}\\frac12\\\\3\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\3\\end{pmatrix}",
       true},
      {"\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
       false},
      {"\\begin{pmatrix}1&2\\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", false},
      // Inequalities as intervals, unions, membership.
      {"1 \\le x < 2", "[1,2)", true},
      {"1 \\leq x \\leq 2", "[1,2)", false},
      {"x > 3", "(3, \\infty)", true},
      {"x \\geq 3", "(3, \\infty)", false},
      {"3 \\ge x", "(-\\infty, 3]", true},
      {"x<-2 \\text{ or } x>3", "(-\\infty,-2)\\cup(3,\\infty)", true},
      {"x \\in [1, 9]", "[1,9]", true},
      // Multiple answers.
      {"x=1 \\text{ or } x=2", "2, 1", true},
      {"x=1 \\text{ or } x=3", "2, 1", false},
      {"2\\pm\\sqrt3", "2-\\sqrt{3}, 2+\\sqrt{3}", true},
      // Exact arithmetic: large integers and fractions are never "close enough".
      {"28121601", "28121600", false},
      {"\\frac{4036081}{4036082}", "\\frac{4036082}{4036081}", false},
      {"123456789012345678901234567890", "123456789012345678901234567891", false},
      {"10^{10^{10}}", "10^{10^{11}}", false},
      {"\\frac{2}{2004!}", "\\frac{1}{2004!}", false},  // both underflow: never "equal"
      {"1.875e-5749", "1.876e-5749", false},
      // Decimals are as close as the digits written: rounded or truncated, not further.
      {"0.333333", "\\frac13", true},
      {"0.7647058823", "\\frac{13}{17}", true},
      {"0.3333", "\\frac13", false},
      {"12345.68", "12345.67", false},
      {"0.8660254", "\\frac{\\sqrt3}{2}", true},
      // Mixed numbers, bases, percentages, thousands in braces, functions, complex numbers.
      {"6\\frac34", "6.75", true},
      {"-2\\frac{1}{2}", "-\\frac52", true},
      {"52", "52_8", true},
      {"50\\%", "50", true},
      {"5\\%", "0.5", false},
      {"8{,}880", "8880", true},
      {"11,\\! 111,\\! 100", "11111100", true},
      {"1:2", "\\frac{1}{2}", true},
      {"3:1", "1:3", false},
      {"\\sec{\\left(x \\right)}", "\\sec x", true},
      {"2\\sin x\\cos x", "\\sin 2x", true},
      {"\\log_2 8", "3", true},
      {"15 i - 12", "-12 + 15i", true},
      {"\\binom{10}{3}", "120", true},
      {"\\text{Monday}", "Monday", true},
      {"\\text{Tuesday}", "Monday", false},
  };
  for (const auto& c : cases)
    EXPECT_EQ(answers_equivalent(c.predicted, c.gold).equivalent, c.equivalent)
        << c.predicted << " vs " << c.gold;
}

TEST(Equivalence, VerdictExplainsItself) {
  const Verdict v = answers_equivalent("\\frac{2}{4}", "0.5");
  EXPECT_TRUE(v.equivalent);
  EXPECT_EQ(v.reason, "exactly equal (1/2)");
  EXPECT_EQ(v.details["predicted_normalized"], "\\frac{2}{4}");
}

TEST(MathReward, ScoresAndNeverThrowsOnGarbage) {
  RewardRegistry registry;
  register_math_rewards(registry);
  const auto math = registry.create("math", nlohmann::json::object());
  EXPECT_EQ(math->score({.completion = "so \\boxed{84}", .reference = {{"answer", "84"}}}).value,
            1.0);
  EXPECT_EQ(math->score({.completion = "so \\boxed{85}", .reference = "84"}).value, 0.0);
  const auto garbage =
      math->score({.completion = std::string(5000, '{') + "\\boxed{" + std::string(3000, '('),
                   .reference = "1"});
  EXPECT_EQ(garbage.value, 0.0);
  EXPECT_TRUE(garbage.details.contains("reason"));
}

TEST(FormatReward, RequiresThinkThenAnswer) {
  RewardRegistry registry;
  register_math_rewards(registry);
  const auto format =
      registry.create("format", {{"answer_open", "<answer>"}, {"answer_close", "</answer>"}});
  EXPECT_EQ(format->score({.completion = "<think>a</think> <answer>3</answer>"}).value, 1.0);
  EXPECT_EQ(format->score({.completion = "<think>a <answer>3</answer>"}).value, 0.0);
  EXPECT_EQ(format->score({.completion = "<think>a</think>"}).value, 0.0);
}

TEST(OverlongReward, LinearPenaltyInsideTheBuffer) {
  RewardRegistry registry;
  register_math_rewards(registry);
  const auto overlong = registry.create("overlong", {{"max_tokens", 100}, {"buffer", 20}});
  auto at = [&](int n) { return overlong->score({.metadata = {{"completion_tokens", n}}}).value; };
  EXPECT_DOUBLE_EQ(at(80), 0.0);
  EXPECT_DOUBLE_EQ(at(90), -0.5);
  EXPECT_DOUBLE_EQ(at(100), -1.0);
  EXPECT_DOUBLE_EQ(at(140), -1.0);
}

}  // namespace
}  // namespace ponder::rewards
