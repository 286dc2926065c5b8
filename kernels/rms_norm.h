// RMSNorm, the model's most frequent elementwise op: an ATen reference (any device, autograd)
// and a fused CUDA kernel used for CUDA tensors outside autograd (rollout).
#pragma once

#include <ATen/ATen.h>

namespace ponder::kernels {

// weight * (x32 * rsqrt(mean(x32^2) + eps)).to(x.dtype), with x32 = x in FP32 (HF semantics).
at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps);
// The fused kernel when x is on a GPU, nothing needs gradients and ponder was built with CUDA.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// The CUDA kernel itself (fails clearly in a build without CUDA).
at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);
bool built_with_cuda();

}  // namespace ponder::kernels
