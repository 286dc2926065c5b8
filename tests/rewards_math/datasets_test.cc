#include <gtest/gtest.h>

#include "core/json_file.h"
#include "rewards/math_answer.h"
#include "tests/common/test_util.h"

namespace ponder::rewards {
namespace {

TEST(Gsm8k, EveryGoldAnswerIsExtractedAndSelfEquivalent) {
  int total = 0, ok = 0;
  for_each_jsonl(testing_util::data_root() / "gsm8k/test.jsonl",
                 [&](const nlohmann::json& r, std::size_t) {
                   ++total;
                   const std::string solution = r["answer"];
                   const auto extracted = extract_answer(solution);
                   const std::string gold = solution.substr(solution.rfind("####") + 4);
                   if (extracted && extracted->method == "gsm8k" &&
                       answers_equivalent(extracted->answer, gold).equivalent)
                     ++ok;
                   else
                     ADD_FAILURE() << "line " << total << ": " << gold;
                 });
  EXPECT_EQ(total, 1319);
  EXPECT_EQ(ok, 1319);
}

// MATH-500: the gold `answer` and the answer boxed in the reference solution agree.
TEST(Math500, GoldAnswerMatchesTheSolutionsBoxedAnswer) {
  int total = 0, ok = 0;
  std::vector<std::string> misses;
  for_each_jsonl(
      testing_util::data_root() / "math/test.jsonl", [&](const nlohmann::json& r, std::size_t) {
        ++total;
        const auto extracted = extract_answer(r["solution"].get<std::string>());
        if (extracted &&
            answers_equivalent(extracted->answer, r["answer"].get<std::string>()).equivalent)
          ++ok;
        else
          misses.push_back(r["answer"].get<std::string>() + "  <->  " +
                           (extracted ? extracted->answer : "(none)"));
      });
  std::cout << "MATH-500: " << ok << "/" << total << " gold answers equal their solution's\n";
  EXPECT_EQ(total, 500);
  EXPECT_GE(ok, 499);
  for (const auto& m : misses) std::cout << "MATH-500 miss: " << m << "\n";
}

}  // namespace
}  // namespace ponder::rewards
