// DeepSeek-V3 FP8 linear layers: the forward, input-gradient and weight-gradient GEMMs all run on
// E4M3 operands with fine-grained FP32 scales and FP32 accumulation; master weights stay FP32.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace ponder::model {

// y = x W^T for x [..., in] and W [out, in]: x in 1x128 tiles, W in 128x128 blocks, quantised on
// every call. Backward: dx = dy W with dy in 1x128 tiles along `out` and W's blocks transposed;
// dW = dy^T x with dy and x both in 1x128 tiles along the token dimension. y and dx take x's
// dtype, dW the weight's.
at::Tensor fp8_linear(const at::Tensor& x, const at::Tensor& weight);

// The same with a weight stored as FP8 blocks (DeepSeek-V3 checkpoints): weight float8_e4m3fn
// [out, in], scale_inv [ceil(out / 128), ceil(in / 128)]. Differentiable in x only.
at::Tensor fp8_linear_prequantized(const at::Tensor& x, const at::Tensor& weight,
                                   const at::Tensor& scale_inv);

// The MoE experts' grouped GEMM: rows of x [P, in] in groups, group g = rows [ends[g - 1], ends[g])
// (every end a multiple of 128 but the last, which is P), times weight[g] [out, in] transposed ->
// y [P, out]. The same FP8 GEMMs as fp8_linear on each group, with one quantisation pass per
// operand for all groups. Differentiable in x and weight [groups, out, in] (out a multiple of 128
// when there are several groups).
at::Tensor fp8_grouped_linear(const at::Tensor& x, const at::Tensor& weight,
                              const std::vector<std::int64_t>& ends);

}  // namespace ponder::model
