// MoE routing (DeepSeek V2/V3 gates): FP32 router logits from the hidden states, then affinities,
// group-limited top-k, normalisation and scaling. An ATen reference (any device, autograd) and a
// CUDA kernel, one warp per token, used for CUDA tensors outside autograd.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "kernels/binding.h"
#include "kernels/moe_route_kernel.h"

namespace ponder::kernels {

struct RouteOptions {
  RouteScoring scoring = RouteScoring::kSoftmax;
  RouteGroups grouping = RouteGroups::kNone;
  std::int64_t groups = 1, keep_groups = 1, k = 1;
  bool normalise = false;  // divide the k weights by their sum (+ 1e-20) when k > 1
  double scaling = 1.0;
};

struct ExpertRouting {
  at::Tensor weights;  // [T, k] float32
  at::Tensor experts;  // [T, k] int64
  at::Tensor scores;   // [T, E] float32 affinities (softmax or sigmoid), before bias and top-k
};

// FP32 logits [T, E] of x [T, hidden] against the router weight [E, hidden], as HF's gates
// compute them (both in FP32). Without gradients on a GPU with BF16 x and weight: one BF16 GEMM
// with FP32 accumulation and output (the products of BF16 values are exact in FP32).
at::Tensor router_logits(const at::Tensor& x, const at::Tensor& weight);

// Routing of logits [T, E] (float32) with `bias` [E] added to the scores that pick experts when
// grouping. The kernel breaks ties towards the lower expert (and group); torch's top-k leaves
// their order unspecified.
ExpertRouting route_experts_reference(const at::Tensor& logits,
                                      const std::optional<at::Tensor>& bias,
                                      const RouteOptions& options);
ExpertRouting route_experts_cuda(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                                 const RouteOptions& options);
ExpertRouting route_experts(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                            const RouteOptions& options);

}  // namespace ponder::kernels
