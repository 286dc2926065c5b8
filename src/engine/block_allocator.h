// Paged KV-cache bookkeeping as plain data: a free-block queue, per-block reference counts and
// copy-on-write, so the n samples of one prompt share the prompt's blocks (vLLM-style).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace ponder::engine {

// Invariants (checked by check_invariants, asserted in debug builds):
//  * every block is either free (ref 0, in the free queue exactly once) or referenced (ref > 0);
//  * free_count() + used blocks == num_blocks.
class BlockAllocator {
 public:
  explicit BlockAllocator(std::int64_t num_blocks);

  std::int64_t num_blocks() const { return static_cast<std::int64_t>(refs_.size()); }
  std::int64_t free_count() const { return static_cast<std::int64_t>(free_.size()); }
  std::int64_t used_count() const { return num_blocks() - free_count(); }
  std::int32_t ref_count(std::int64_t block) const { return refs_.at(block); }

  // A fresh block with ref 1, or nullopt when none is free.
  std::optional<std::int64_t> allocate();
  // Shares a block with one more owner.
  void retain(std::int64_t block);
  // Drops one owner; the block returns to the free queue at ref 0.
  void release(std::int64_t block);
  void release_all(const std::vector<std::int64_t>& blocks);

  void check_invariants() const;

 private:
  std::vector<std::int32_t> refs_;
  std::deque<std::int64_t> free_;
};

}  // namespace ponder::engine
