// Fuzzing the math checker: 100,000 verdicts on random and adversarial strings (deep nesting,
// huge exponents, 10^6-digit numbers, unbalanced braces, wide collections). No crash, no hang,
// and every verdict is bounded: the slowest must take under 50 ms of CPU time.
#include <gtest/gtest.h>
#include <time.h>

#include <random>

#include "rewards/math_answer.h"
#include "rewards/math_rewards.h"

namespace ponder::rewards {
namespace {

constexpr int kVerdicts = 100000;

double thread_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::vector<std::string> adversarial_inputs() {
  std::vector<std::string> v = {
      std::string(1000000, '9'),  // 10^6 digits
      "1" + std::string(999999, '0') + " + 1",
      "10^{10^{10^{10}}}",
      "9^{9^{9^{9^{9}}}}",
      "2^{-10^{100}}",
      "(10^{308})^{10}",
      "1e999999",
      "1.5e-999999",
      "\\binom{10^{9}}{5}",
      "\\binom{1000}{500}",
      "(10^{20})!",
      "1000000!",
      "0^{-1}",
      "\\frac{1}{0}",
      "\\log 0",
      "\\tan(\\pi/2)",
      "e^{e^{e^{e^{10}}}}",
      "\\sqrt[0]{2}",
      "\\sqrt[10^{9}]{10^{9}}",
      "-\\infty^{\\infty}",
      "\\left(\\right.",
      "\\begin{pmatrix}",
      "\\end{pmatrix}\\begin{pmatrix}",
      "x \\in",
      "= = =",
      "\\text{",
      "\\boxed{",
      "1 < x < 2 < 3 < 4 < 5",
  };
  for (int d : {10, 63, 64, 65, 100, 1000, 2000, 5000}) {
    v.push_back(repeat("{", d) + "1" + repeat("}", d));
    v.push_back(repeat("(", d) + "x" + repeat(")", d));
    v.push_back(repeat("\\frac{", d) + "1" + repeat("}{2}", d));
    v.push_back(repeat("\\sqrt{", d) + "2" + repeat("}", d));
    v.push_back(repeat("-", d) + "1");
    v.push_back(repeat("2^", d) + "2");
    v.push_back(repeat("\\{", d) + "1" + repeat("\\}", d));
    v.push_back(repeat("\\sin ", d) + "x");
    v.push_back(repeat("\\begin{pmatrix}", d) + "1" + repeat("\\end{pmatrix}", d));
    v.push_back(repeat("{", d));
    v.push_back(repeat("}", d) + repeat("{", d));
    v.push_back(repeat("\\boxed{", d) + "7");
    v.push_back(repeat("\\text{", d) + "a");
    v.push_back(repeat("1+", d) + "1");
    v.push_back(repeat("x", d));
    v.push_back(repeat("1,", d) + "1");
    v.push_back(repeat("(1,2),", d) + "(3,4)");
    v.push_back(repeat("x<", d) + "1");
    v.push_back(repeat("[0,1)\\cup", d) + "[2,3]");
    v.push_back("\\begin{pmatrix}" + repeat(repeat("1&", d / 10) + "1\\\\", d / 10) +
                "\\end{pmatrix}");
  }
  // Nested collections whose element comparisons would multiply without a work bound.
  const std::string inner = "\\{" + repeat("1,", 30) + "2\\}";
  v.push_back("\\{" + repeat(inner + ",", 30) + inner + "\\}");
  v.push_back(repeat("(" + repeat("x,", 20) + "y),", 40) + "z");
  return v;
}

std::string random_tokens(std::mt19937& rng) {
  static const std::vector<std::string> tokens = {"0",
                                                  "1",
                                                  "7",
                                                  "12",
                                                  ".",
                                                  ",",
                                                  "+",
                                                  "-",
                                                  "*",
                                                  "/",
                                                  "^",
                                                  "!",
                                                  "%",
                                                  "\\%",
                                                  "(",
                                                  ")",
                                                  "[",
                                                  "]",
                                                  "{",
                                                  "}",
                                                  "\\{",
                                                  "\\}",
                                                  "x",
                                                  "y",
                                                  "e",
                                                  "i",
                                                  "=",
                                                  "<",
                                                  ">",
                                                  "\\le",
                                                  "\\ge",
                                                  "\\frac",
                                                  "\\dfrac",
                                                  "\\sqrt",
                                                  "\\pi",
                                                  "\\infty",
                                                  "\\sin",
                                                  "\\log_",
                                                  "\\binom",
                                                  "\\cdot",
                                                  "\\pm",
                                                  "\\cup",
                                                  "\\in",
                                                  "&",
                                                  "\\\\",
                                                  "\\begin{pmatrix}",
                                                  "\\end{pmatrix}",
                                                  "\\text{",
                                                  " or ",
                                                  "\\boxed{",
                                                  "\\left(",
                                                  "\\right)",
                                                  " ",
                                                  "$",
                                                  "_",
                                                  "\\alpha",
                                                  "10^{",
                                                  "e9",
                                                  "|"};
  std::string s;
  const int n = static_cast<int>(rng() % 40);
  for (int i = 0; i < n; ++i) s += tokens[rng() % tokens.size()];
  return s;
}

std::string random_bytes(std::mt19937& rng) {
  std::string s(rng() % 100, '\0');
  for (char& c : s) c = static_cast<char>(rng() % 256);
  return s;
}

TEST(Fuzz, HundredThousandVerdictsAreBoundedAndSafe) {
  std::mt19937 rng(7);
  const auto adversarial = adversarial_inputs();
  const std::vector<std::string> golds = {"1",
                                          "\\frac12",
                                          "(1,2)",
                                          "[0,1)",
                                          "x^2+1",
                                          "\\{1,2\\}",
                                          "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
                                          "1e999999"};
  RewardRegistry registry;
  register_math_rewards(registry);
  const auto math = registry.create("math", nlohmann::json::object());
  double worst_ms = 0, total_ms = 0;
  std::string worst_input;
  for (int n = 0; n < kVerdicts; ++n) {
    const int kind = n % 10;
    std::string input = kind == 0   ? adversarial[(n / 10) % adversarial.size()]
                        : kind == 1 ? random_bytes(rng)
                                    : random_tokens(rng);
    const std::string& gold =
        kind == 2 ? adversarial[rng() % adversarial.size()] : golds[rng() % golds.size()];
    const double start = thread_cpu_ms();
    if (kind == 3) {  // the whole reward: extraction from a completion, then the verdict
      const auto r = math->score({.completion = "So \\boxed{" + input + "}", .reference = gold});
      EXPECT_TRUE(r.details.contains("reason"));
    } else {
      (void)answers_equivalent(input, gold);
    }
    const double ms = thread_cpu_ms() - start;
    total_ms += ms;
    if (ms > worst_ms) {
      worst_ms = ms;
      worst_input = input.substr(0, 80);
    }
  }
  std::cout << kVerdicts << " verdicts, " << total_ms / 1e3 << " s CPU, slowest " << worst_ms
            << " ms on: " << worst_input << "\n";
  EXPECT_LT(worst_ms, 50.0) << worst_input;
}

// Every input, however hostile, is equivalent to itself (the checker stays reflexive).
TEST(Fuzz, AdversarialInputsAreEquivalentToThemselves) {
  for (const auto& s : adversarial_inputs()) {
    if (normalize_answer(s).empty()) continue;
    EXPECT_TRUE(answers_equivalent(s, s).equivalent) << s.substr(0, 80);
  }
}

}  // namespace
}  // namespace ponder::rewards
