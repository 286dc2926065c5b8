// Grouped GEMM of MoE experts for few rows per expert (decode): tokens sorted by expert times
// each expert's weights, SwiGLU optionally fused; an ATen reference and the BF16 CUDA kernel.
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// x [rows, k] with the rows of group g at [ends[g-1], ends[g]) (ends [groups] int32, the last
// equal to rows), w [groups, n, k] -> [rows, n] = x_g w_g^T per group, products summed in FP32.
// swiglu: w rows [0, n/2) are the gate and [n/2, n) the up projection -> [rows, n/2] =
// silu(x w_gate^T) * (x w_up^T) in FP32, rounded to x's dtype once.
at::Tensor grouped_gemm_reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                                  bool swiglu);
// The CUDA kernels: kFewRows (cp.async + mma.sync, any GPU the build targets) and kWgmma (TMA +
// wgmma with a producer warp, sm_90a: Hopper only) read each group's weights once per 64 of its
// rows: meant for up to ~64 rows per group (decode). kWgmmaLarge (TMA + wgmma in 128 x 256 tiles,
// sm_90a) is compute-bound from a few hundred rows per group (prefill, scoring).
enum class GroupedKernel { kFewRows, kWgmma, kWgmmaLarge };
// True when grouped_gemm_cuda takes these: BF16 on a GPU, w contiguous, k % 64 == 0,
// n % 128 == 0, and use_kernel() holds; kWgmma and kWgmmaLarge also need a compute capability 9.0
// device and x, w 16-byte aligned; kWgmmaLarge also k > 0, n % 256 == 0 and at most 1024 groups.
bool grouped_gemm_supported(const at::Tensor& x, const at::Tensor& w,
                            GroupedKernel kernel = GroupedKernel::kFewRows);
at::Tensor grouped_gemm_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                             bool swiglu, GroupedKernel kernel = GroupedKernel::kFewRows);
// The kernel when supported, else the reference.
at::Tensor grouped_gemm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                        bool swiglu, GroupedKernel kernel = GroupedKernel::kFewRows);

}  // namespace ponder::kernels
