// MoE token permutation around the grouped expert GEMMs: (token, choice) pairs sorted stably by
// expert with their token rows gathered, and the weighted combine back to token order (with the
// shared experts' add, and the residual add and next norm that follow the layer). ATen
// references (any device, autograd) and CUDA kernels (no host sync, no sort) used for CUDA
// tensors outside autograd.
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "kernels/binding.h"
#include "kernels/rms_norm.h"

namespace ponder::kernels {

// Pair i = t k + j of experts [T, k] (int64) routes token t to expert experts[t][j].
struct ExpertPermutation {
  at::Tensor order;     // [T k] int64: the pair at each sorted row (stable: pair order per expert)
  at::Tensor position;  // [T k] int64: the sorted row of each pair (order's inverse)
  at::Tensor ends;      // [experts] int32: pairs routed to experts 0..e (grouped GEMM offsets)
  at::Tensor rows;      // [T k, hidden]: row p = x[order[p] / k]
};

// x [T, hidden], experts [T, k] with ids in [0, n_experts).
ExpertPermutation permute_by_expert_reference(const at::Tensor& x, const at::Tensor& experts,
                                              std::int64_t n_experts);
ExpertPermutation permute_by_expert_cuda(const at::Tensor& x, const at::Tensor& experts,
                                         std::int64_t n_experts);
ExpertPermutation permute_by_expert(const at::Tensor& x, const at::Tensor& experts,
                                    std::int64_t n_experts);

// Expert outputs y [T k, cols] in sorted order back to tokens: out [T, cols] = sum over j of
// y[position[t k + j]] * weights[t][j] (weights [T, k] float32 rounded to y's dtype, products in
// y's dtype, the sum in FP32 rounded once), plus `shared` [T, cols] (the shared experts' output,
// y's dtype) when set, as ATen adds it.
at::Tensor combine_experts_reference(const at::Tensor& y, const at::Tensor& position,
                                     const at::Tensor& weights,
                                     const std::optional<at::Tensor>& shared = std::nullopt);
at::Tensor combine_experts_cuda(const at::Tensor& y, const at::Tensor& position,
                                const at::Tensor& weights,
                                const std::optional<at::Tensor>& shared = std::nullopt);
at::Tensor combine_experts(const at::Tensor& y, const at::Tensor& position,
                           const at::Tensor& weights,
                           const std::optional<at::Tensor>& shared = std::nullopt);

// The MoE layer's output added to the residual stream x [T, cols] and normed by the next norm:
// add_rms_norm(x, combine_experts(y, position, weights, shared), weight, eps), one kernel on a GPU
// (bitwise the same as that chain of kernels).
AddRmsNorm combine_experts_add_rms_norm_reference(const at::Tensor& y, const at::Tensor& position,
                                                  const at::Tensor& weights,
                                                  const std::optional<at::Tensor>& shared,
                                                  const at::Tensor& x, const at::Tensor& weight,
                                                  double eps);
AddRmsNorm combine_experts_add_rms_norm_cuda(const at::Tensor& y, const at::Tensor& position,
                                             const at::Tensor& weights,
                                             const std::optional<at::Tensor>& shared,
                                             const at::Tensor& x, const at::Tensor& weight,
                                             double eps);
AddRmsNorm combine_experts_add_rms_norm(const at::Tensor& y, const at::Tensor& position,
                                        const at::Tensor& weights,
                                        const std::optional<at::Tensor>& shared,
                                        const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace ponder::kernels
