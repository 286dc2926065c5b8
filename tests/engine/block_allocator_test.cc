#include "engine/block_allocator.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace ponder::engine {
namespace {

TEST(BlockAllocator, AllocatesUntilFullAndRecyclesFreedBlocks) {
  BlockAllocator a(3);
  const auto b0 = a.allocate(), b1 = a.allocate(), b2 = a.allocate();
  ASSERT_TRUE(b0 && b1 && b2);
  EXPECT_FALSE(a.allocate().has_value());
  EXPECT_EQ(a.free_count(), 0);
  a.release(*b1);
  EXPECT_EQ(a.allocate(), b1);
  a.check_invariants();
}

TEST(BlockAllocator, SharedBlocksReturnOnlyWhenTheLastOwnerReleases) {
  BlockAllocator a(2);
  const std::int64_t b = *a.allocate();
  a.retain(b);
  a.retain(b);
  EXPECT_EQ(a.ref_count(b), 3);
  a.release(b);
  a.release(b);
  EXPECT_EQ(a.free_count(), 1);
  a.release(b);
  EXPECT_EQ(a.free_count(), 2);
  EXPECT_THROW(a.release(b), Error);  // double free is caught
  EXPECT_THROW(a.retain(b), Error);
  a.check_invariants();
}

}  // namespace
}  // namespace ponder::engine
