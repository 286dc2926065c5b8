#include "engine/block_allocator.h"

#include <cassert>

#include "core/error.h"

namespace ponder::engine {

BlockAllocator::BlockAllocator(std::int64_t num_blocks) : refs_(num_blocks, 0) {
  for (std::int64_t b = 0; b < num_blocks; ++b) free_.push_back(b);
}

std::optional<std::int64_t> BlockAllocator::allocate() {
  if (free_.empty()) return std::nullopt;
  const std::int64_t block = free_.front();
  free_.pop_front();
  refs_[block] = 1;
  return block;
}

void BlockAllocator::retain(std::int64_t block) {
  if (refs_.at(block) <= 0)
    throw Error("block allocator: retain of free block " + std::to_string(block));
  ++refs_[block];
}

void BlockAllocator::release(std::int64_t block) {
  if (refs_.at(block) <= 0)
    throw Error("block allocator: double free of block " + std::to_string(block));
  if (--refs_[block] == 0) free_.push_back(block);
#ifndef NDEBUG
  check_invariants();
#endif
}

void BlockAllocator::release_all(const std::vector<std::int64_t>& blocks) {
  for (auto b : blocks) release(b);
}

void BlockAllocator::check_invariants() const {
  std::vector<int> in_queue(refs_.size(), 0);
  for (auto b : free_) {
    if (refs_[b] != 0)
      throw Error("block allocator: free block " + std::to_string(b) + " has refs");
    if (++in_queue[b] > 1)
      throw Error("block allocator: block " + std::to_string(b) + " queued twice");
  }
  for (std::size_t b = 0; b < refs_.size(); ++b)
    if (refs_[b] == 0 && !in_queue[b])
      throw Error("block allocator: block " + std::to_string(b) + " leaked");
}

}  // namespace ponder::engine
