// The batch buckets of the CUDA-graph decode path (the graphs themselves are tested on the GPU in
// tests/kernels/engine_gpu_test.cc): hand-computed sizes.
#include "engine/decode_graphs.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ponder::engine
