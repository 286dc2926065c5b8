// Expert parallelism for DeepSeekMoE layers: each rank holds a contiguous block of the routed
// experts; tokens go to their experts' ranks and back by differentiable all-to-all exchanges.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

#include "dist/process_group.h"
#include "model/layers.h"

namespace ponder::dist {

// Wraps a model::Moe whose router (gate, correction bias) and shared experts are replicated on
// every rank; of its routed experts only this rank's block [first, last) is used (the others may
// be left empty). Routing is the Moe's own. Collective: every rank calls it with its own tokens,
// and backward (if any) on every rank too. Gradients of the replicated router and shared experts
// cover this rank's tokens only (sum them across ranks, as DataParallel does); gradients of the
// local experts cover every rank's tokens routed to them.
class ExpertParallelMoe {
 public:
  ExpertParallelMoe(ProcessGroup& group, const model::Moe& moe);
  at::Tensor operator()(const at::Tensor& x) const;  // [T_rank, hidden] -> [T_rank, hidden]
  std::pair<std::int64_t, std::int64_t> local_experts() const { return {first_, last_}; }

 private:
  ProcessGroup& group_;
  const model::Moe& moe_;
  std::int64_t first_ = 0, last_ = 0;
  at::Tensor owner_;  // [experts] int64: the rank holding each expert
};

// Differentiable all-to-all of rows (backward sends the gradients back the same way).
at::Tensor all_to_all_rows(ProcessGroup& group, const at::Tensor& input,
                           const std::vector<std::int64_t>& recv_counts,
                           const std::vector<std::int64_t>& send_counts);

}  // namespace ponder::dist
