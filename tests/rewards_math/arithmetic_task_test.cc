// The synthetic arithmetic task: hand-checked column working, and every SFT solution scored
// correct by the math reward that trains on it.
#include <gtest/gtest.h>

#include "core/error.h"
#include "datasets/task.h"
#include "rewards/builtin.h"

namespace ponder::datasets {
namespace {

TEST(ArithmeticTask, WorkedAdditionCarriesColumnByColumn) {
  EXPECT_EQ(worked_addition(47, 85), "7 + 5 = 12, carry 1. 4 + 8 + 1 = 13. 47 + 85 = 132");
  EXPECT_EQ(worked_addition(105, 7),
            "5 + 7 = 12, carry 1. 0 + 0 + 1 = 1. 1 + 0 = 1. 105 + 7 = 112");
  EXPECT_EQ(worked_addition(0, 0), "0 + 0 = 0. 0 + 0 = 0");
  EXPECT_EQ(worked_addition(31, 4), "1 + 4 = 5. 3 + 0 = 3. 31 + 4 = 35");
}

TEST(ArithmeticTask, SolutionsAreCorrectAndMixStylesAsAsked) {
  const auto examples = arithmetic_examples(3, 2000, 2, 0.3);
  EXPECT_EQ(arithmetic_examples(3, 2000, 2, 0.3)[1234].solution, examples[1234].solution);
  auto math = rewards::builtin_rewards().create("math", nlohmann::json::object());
  int worked = 0;
  for (const auto& e : examples) {
    ASSERT_EQ(math->score({e.question, e.solution, e.reference, {}}).value, 1.0) << e.solution;
    worked +=
        e.solution.find("carry") != std::string::npos || e.solution.find(". ") != std::string::npos;
  }
  EXPECT_NEAR(worked / 2000.0, 0.3, 0.03);
  EXPECT_THROW(arithmetic_examples(1, 1, 0, 0.5), Error);
}

}  // namespace
}  // namespace ponder::datasets
