// Raw-pointer interface of the fused MoE routing kernel (no LibTorch here): affinities from FP32
// router logits, group-limited top-k, normalisation and scaling, one warp per token.
#pragma once

#include <cstdint>

namespace ponder::kernels {

// Expert affinities from router logits, and how groups of experts limit the top-k (DeepSeek
// topk_method greedy; group_limited_greedy ranks groups by their best expert and masks the rest
// to 0; noaux_tc by the sum of their best two and masks the rest to -inf).
enum class RouteScoring { kSoftmax, kSigmoid };
enum class RouteGroups { kNone, kMax, kTopTwoSum };

// The kernel's limits: experts held in registers (8 per lane), choices and groups one per lane.
inline constexpr int kRouteMaxExperts = 256, kRouteMaxChoices = 32, kRouteMaxGroups = 32;

// Per token t: scores = softmax or sigmoid of logits[t]; choice = scores + bias (bias only with
// groups; null = 0); with groups, `keep_groups` of `groups` equal groups ranked by their best
// choice (kMax, others masked to 0) or best two summed (kTopTwoSum, others masked to -inf); the
// k best choices in descending order, ties to the lower expert (groups likewise); weights = their
// scores, divided by (their sum + 1e-20) if `normalise`, times `scaling`.
struct RouteParams {
  const float* logits = nullptr;   // [tokens, experts] contiguous
  const float* bias = nullptr;     // [experts] or null
  float* scores = nullptr;         // [tokens, experts]
  float* weights = nullptr;        // [tokens, k]
  std::int64_t* chosen = nullptr;  // [tokens, k]
  std::int64_t tokens = 0;
  int experts = 0, k = 1, groups = 1, keep_groups = 1;
  RouteScoring scoring = RouteScoring::kSoftmax;
  RouteGroups grouping = RouteGroups::kNone;
  bool normalise = false;
  float scaling = 1.0f;
};

// One launch, no host sync. Returns the CUDA error code.
int launch_route(const RouteParams& params, void* stream);

}  // namespace ponder::kernels
