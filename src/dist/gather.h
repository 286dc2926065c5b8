// Cross-rank helpers for data-parallel RL: each rank's share of the prompts, global sums for loss
// normalisers and metrics, and gathering per-group rewards and rollout records from every rank.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "dist/process_group.h"

namespace ponder::dist {

// Rank's contiguous share [begin, end) of `total` items; the first total % world ranks get one
// more. Shares are in rank order, so gathering rank by rank restores the global order.
std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t total, int rank, int world);

// Collective: where this rank's `count` items start in the rank-ordered concatenation of every
// rank's items, and how many there are in all.
std::pair<std::int64_t, std::int64_t> global_offset(ProcessGroup& group, std::int64_t count);

// Collective: the sum of `value` over ranks (FP64).
double global_sum(ProcessGroup& group, double value);
// Collective: element-wise sums over ranks of equally long vectors, in one all-reduce.
std::vector<double> global_sums(ProcessGroup& group, const std::vector<double>& values);
// Collective: the largest `value` of any rank.
double global_max(ProcessGroup& group, double value);

// Collective: every rank's `local` [n_r, ...] concatenated along dim 0 in rank order; n_r may
// differ between ranks, the other dimensions and the dtype may not. With per-rank reward tables
// [groups_r, samples] this is the global reward table, for group advantages and metrics.
at::Tensor all_gather_rows(ProcessGroup& group, const at::Tensor& local);

// Collective: every rank's string (e.g. serialized rollout records for rank 0's run store).
std::vector<std::string> all_gather_strings(ProcessGroup& group, const std::string& local);
// Collective: rank 0's `value` on every rank (what the other ranks pass is ignored).
std::string from_main(ProcessGroup& group, const std::string& value);

}  // namespace ponder::dist
