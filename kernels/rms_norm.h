// RMSNorm, the model's most frequent elementwise op, alone and fused with the residual add that
// precedes it: ATen references (any device, autograd) and CUDA kernels used for CUDA tensors
// outside autograd (rollout).
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// weight * (x32 * rsqrt(mean(x32^2) + eps)).to(x.dtype), with x32 = x in FP32 (HF semantics).
at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps);
// The fused kernel when use_kernel() says so and dtypes agree, else the reference.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// The CUDA kernel itself (fails clearly in a build without CUDA).
at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps);

// sum = x + residual (in x's dtype), normed = rms_norm(sum): a pre-norm block's residual update
// fused with the next norm.
struct AddRmsNorm {
  at::Tensor sum, normed;
};
AddRmsNorm add_rms_norm_reference(const at::Tensor& x, const at::Tensor& residual,
                                  const at::Tensor& weight, double eps);
AddRmsNorm add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps);
AddRmsNorm add_rms_norm_cuda(const at::Tensor& x, const at::Tensor& residual,
                             const at::Tensor& weight, double eps);

}  // namespace ponder::kernels
