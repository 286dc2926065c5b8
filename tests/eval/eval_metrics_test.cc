#include "train/eval_metrics.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace ponder::train {
namespace {

TEST(PassAtK, MatchesHandComputedBinomials) {
  EXPECT_DOUBLE_EQ(pass_at_k(4, 1, 1), 0.25);
  EXPECT_DOUBLE_EQ(pass_at_k(4, 0, 2), 0.0);
  EXPECT_DOUBLE_EQ(pass_at_k(4, 4, 4), 1.0);
  // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
  EXPECT_NEAR(pass_at_k(5, 2, 2), 0.7, 1e-12);
  // n=10, c=3, k=5: 1 - C(7,5)/C(10,5) = 1 - 21/252
  EXPECT_NEAR(pass_at_k(10, 3, 5), 1.0 - 21.0 / 252.0, 1e-12);
  // n=8, c=2, k=3: 1 - C(6,3)/C(8,3) = 1 - 20/56
  EXPECT_NEAR(pass_at_k(8, 2, 3), 1.0 - 20.0 / 56.0, 1e-12);
  EXPECT_DOUBLE_EQ(pass_at_k(8, 0, 8), 0.0);
  // n - c < k: every draw of k contains a correct sample
  EXPECT_DOUBLE_EQ(pass_at_k(5, 3, 3), 1.0);
}

TEST(PassAtK, PassAtOneIsTheMeanAccuracy) {
  for (std::size_t c = 0; c <= 16; ++c) EXPECT_NEAR(pass_at_k(16, c, 1), c / 16.0, 1e-12);
}

TEST(PassAtK, RejectsImpossibleArguments) {
  EXPECT_THROW(pass_at_k(4, 1, 5), Error);
  EXPECT_THROW(pass_at_k(4, 5, 1), Error);
  EXPECT_THROW(pass_at_k(4, 1, 0), Error);
}

TEST(MajorityAtK, MostFrequentAnswerDecides) {
  const std::vector<Vote> votes = {
      {"3", false}, {"4", true}, {"4", true}, {"3", false}, {"3", false}};
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 3), 1.0);  // 4 twice, 3 once
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 5), 0.0);  // 3 three times
}

TEST(MajorityAtK, TiesGoToTheAnswerSeenFirst) {
  const std::vector<Vote> votes = {{"7", true}, {"8", false}, {"8", false}, {"7", true}};
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 4), 1.0);
  const std::vector<Vote> reversed = {{"8", false}, {"7", true}, {"7", true}, {"8", false}};
  EXPECT_DOUBLE_EQ(majority_at_k(reversed, 4), 0.0);
}

TEST(MajorityAtK, ThreeWayTieAndLaterMajority) {
  // k=3: 1, 2, 3 once each -> the first ("1", wrong); k=5: "3" twice beats the rest.
  const std::vector<Vote> votes = {
      {"1", false}, {"2", false}, {"3", true}, {std::nullopt, false}, {"3", true}};
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 3), 0.0);
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 5), 1.0);
  EXPECT_THROW(majority_at_k(votes, 0), Error);
  EXPECT_THROW(majority_at_k(votes, 6), Error);
}

TEST(MajorityAtK, MissingAnswersDoNotVote) {
  const std::vector<Vote> votes = {{std::nullopt, false}, {std::nullopt, false}, {"5", true}};
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 3), 1.0);
  EXPECT_DOUBLE_EQ(majority_at_k(votes, 2), 0.0);
  EXPECT_THROW(majority_at_k(votes, 4), Error);
}

}  // namespace
}  // namespace ponder::train
