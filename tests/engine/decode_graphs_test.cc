// The batch buckets and block-table widths of the CUDA-graph decode path (the graphs themselves
// are tested on the GPU in tests/kernels/engine_gpu_test.cc): hand-computed sizes.
#include "engine/decode_graphs.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace ponder::engine {
namespace {

TEST(DecodeBucket, PowersOfTwoThenMultiplesOfEightThenThirtyTwo) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> expected = {
      {1, 1},   {2, 2},   {3, 4},   {5, 8},   {8, 8},    {9, 16},    {16, 16},   {17, 24},
      {63, 64}, {64, 64}, {65, 96}, {96, 96}, {97, 128}, {200, 224}, {255, 256}, {256, 256}};
  for (const auto& [n, bucket] : expected) EXPECT_EQ(decode_bucket(n, 256), bucket) << n;
}

TEST(DecodeBucket, NeverExceedsTheRunningLimit) {
  EXPECT_EQ(decode_bucket(97, 100), 100);
  EXPECT_EQ(decode_bucket(100, 100), 100);
  EXPECT_EQ(decode_bucket(5, 6), 6);
  EXPECT_EQ(decode_bucket(3, 3), 3);
}

// The bench's rollout: 512-token prompts + 1,024 new tokens in pages of 64 tokens.
TEST(TableWidth, PagesOfTheLongestSequence) {
  EXPECT_EQ(table_width(512 + 1024, 64, 163840, 10000), 24);
  EXPECT_EQ(table_width(1537, 64, 163840, 10000), 25);
  EXPECT_EQ(table_width(64, 64, 2048, 100), 1);
  EXPECT_EQ(table_width(65, 64, 2048, 100), 2);
  EXPECT_EQ(table_width(158, 64, 2048, 31), 3);
  EXPECT_EQ(table_width(1, 4, 2048, 95), 1);
}

TEST(TableWidth, BoundedByTheContextAndTheCache) {
  EXPECT_EQ(table_width(512 + 32768, 64, 4096, 10000), 64) << "4,096-token context";
  EXPECT_EQ(table_width(4097, 64, 4096, 10000), 64);
  EXPECT_EQ(table_width(512 + 1024, 64, 163840, 10), 10) << "a cache of 10 free pages";
  EXPECT_EQ(table_width(100, 16, 2048, 0), 1) << "at least one page";
  EXPECT_THROW(table_width(100, 0, 2048, 10), Error);
}

}  // namespace
}  // namespace ponder::engine
