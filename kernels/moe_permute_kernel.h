// Raw-pointer interface of the MoE token permutation kernels (no LibTorch here): a stable
// counting sort of (token, choice) pairs by expert that also gathers each pair's token row, and
// the combine that brings expert outputs back to token order weighted by the routing weights.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

// Pairs per block of the sort's count pass (its scratch holds blocks x experts counts), the most
// experts the sort takes, and the most pairs it sorts in one launch (a decode step's).
inline constexpr int kPermuteTile = 256, kPermuteMaxExperts = 1024, kRankedPairs = 2048;

// Pair i = t * k + j routes token t to expert experts[i]. The pairs sorted stably by expert:
// order[p] = the pair at sorted row p, position[i] = the sorted row of pair i, ends[e] = pairs
// routed to experts 0..e; rows[p] = x[order[p] / k] when x is set. Expert ids outside
// [0, experts) are sorted as the last expert (memory stays in bounds).
struct ExpertSortParams {
  const std::int64_t* experts = nullptr;  // [pairs]
  std::int64_t* order = nullptr;          // [pairs]
  std::int64_t* position = nullptr;       // [pairs]
  std::int32_t* ends = nullptr;           // [experts]
  std::int32_t* scratch = nullptr;        // expert_sort_scratch(pairs, experts) int32
  const void* x = nullptr;                // [pairs / k, row_bytes] or null
  void* rows = nullptr;                   // [pairs, row_bytes]
  std::int64_t pairs = 0, row_bytes = 0;
  int experts_count = 0, k = 1;
};

// int32 elements of scratch the sort needs (none up to kRankedPairs pairs).
std::int64_t expert_sort_scratch(std::int64_t pairs, int experts);
// One launch up to kRankedPairs pairs (each pair ranked by counting over all pairs, then placed
// and gathered), else three (count, scan, scatter + gather); no host sync. Returns the CUDA error
// code.
int launch_expert_sort(const ExpertSortParams& params, void* stream);

// out[t] = sum over j < k of y[position[t k + j]] * weights[t k + j], each weight rounded to the
// element type and each product rounded to it before an FP32 sum, rounded once at the end; then
// + shared[t] (rounded) when shared is set. With residual (and norm_weight, normed) set: out[t] =
// residual[t] + that (rounded) and normed[t] = RMSNorm(out[t]) * norm_weight, as the RMSNorm
// kernel computes it (one block per token).
struct ExpertCombineParams {
  const void* y = nullptr;                 // [pairs, cols] contiguous
  const std::int64_t* position = nullptr;  // [tokens * k]
  const float* weights = nullptr;          // [tokens * k]
  const void* shared = nullptr;            // optional [tokens, cols] contiguous
  const void* residual = nullptr;          // optional [tokens, cols] contiguous
  const void* norm_weight = nullptr;       // [cols] with residual
  void* out = nullptr;                     // [tokens, cols] contiguous
  void* normed = nullptr;                  // [tokens, cols] contiguous, with residual
  std::int64_t tokens = 0, cols = 0;
  int k = 1;
  float eps = 1e-6f;
  ElementType type = ElementType::kBFloat16;
};

int launch_expert_combine(const ExpertCombineParams& params, void* stream);

}  // namespace ponder::kernels
