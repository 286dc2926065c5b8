// group_rank_facts: every rank's facts shown once, ranks with equal facts on one line with their
// ranks as runs, lines in the order of each group's first rank.
#include "train/parallel.h"

#include <gtest/gtest.h>

namespace ponder::train {
namespace {

TEST(GroupRankFacts, EqualFactsShareOneLine) {
  EXPECT_EQ(group_rank_facts({"cuda, kernel", "cuda, kernel"}),
            std::vector<std::string>{"ranks 0-1: cuda, kernel"});
  EXPECT_EQ(group_rank_facts({"cpu"}), std::vector<std::string>{"rank 0: cpu"});
  EXPECT_TRUE(group_rank_facts({}).empty());
}

TEST(GroupRankFacts, DifferingRanksGetTheirOwnLinesWithRuns) {
  const std::vector<std::string> facts = {"kernel", "kernel", "reference", "kernel",
                                          "kernel", "kernel", "reference", "none"};
  EXPECT_EQ(group_rank_facts(facts),
            (std::vector<std::string>{"ranks 0-1, 3-5: kernel", "ranks 2, 6: reference",
                                      "rank 7: none"}));
}

}  // namespace
}  // namespace ponder::train
