// Data-parallel training with ZeRO-1 sharded optimizer state: gradients summed across ranks by
// reduce-scatter, AdamW on this rank's shard of the flattened parameters, parameters all-gathered.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "dist/process_group.h"
#include "train/adamw.h"

namespace ponder::dist {

// The parameters (same dtype and device, contiguous) are laid end to end in one flat vector,
// padded to a multiple of the world size; rank r owns elements [r * S, (r + 1) * S) and keeps
// AdamW moments for those only.
//
// Gradients are SUMMED over ranks, so each rank's loss must be its share of the global-batch
// loss: local sum over its examples (or tokens) divided by the global count (see global_sum in
// dist/gather.h). The update then equals a one-process step on the whole global batch.
class DataParallel {
 public:
  // Collective: every rank starts from rank 0's parameter values.
  DataParallel(ProcessGroup& group, std::vector<at::Tensor> params, train::AdamWOptions options);

  // Collective, after loss.backward(): sums gradients across ranks, clips them to max_norm by
  // their global L2 norm (0: no clipping), runs AdamW(lr) on this rank's shard, all-gathers the
  // parameters and clears the gradients. Returns the global gradient norm before clipping.
  // A parameter without a gradient on every rank is skipped, as train::AdamW does.
  double step(double lr, double max_norm);
  void zero_grad();
  std::int64_t steps() const { return optimizer_.steps(); }

  // Collective: the AdamW state of every parameter in full (each rank's shard all-gathered), for
  // a checkpoint that any number of processes can resume from.
  train::AdamWState full_state();
  // Takes this rank's shard of a full state (as full_state returns or a checkpoint holds).
  void load_state(const train::AdamWState& state);

  // Elements [shard_begin, shard_end) of the flat parameter vector belong to this rank.
  std::int64_t shard_begin() const { return shard_begin_; }
  std::int64_t shard_end() const { return shard_begin_ + shard_size_; }

 private:
  // A parameter's overlap with this rank's shard: a 1-D view into the parameter.
  struct Segment {
    std::size_t param;
    std::int64_t param_offset, shard_offset, length;
  };
  // Fills offsets_, the shard bounds and segments_; returns the views the shard optimizer owns.
  std::vector<at::Tensor> shard_layout();
  void pack(at::Tensor& flat) const;
  void unpack(const at::Tensor& flat);
  at::Tensor reduced_gradient_flags();
  // One moment list of the shard optimizer gathered into full parameter-shaped tensors.
  std::vector<at::Tensor> gather_moments(const std::vector<at::Tensor>& shard_moments);

  ProcessGroup& group_;
  std::vector<at::Tensor> params_;
  std::vector<std::int64_t> offsets_;  // flat offset of each parameter
  std::int64_t shard_begin_ = 0, shard_size_ = 0;
  std::vector<Segment> segments_;
  std::vector<at::Tensor> shard_views_;  // one per segment, sharing the parameters' storage
  train::AdamW optimizer_;
  at::Tensor flat_, shard_;  // buffers [world * S] and [S]
};

}  // namespace ponder::dist
