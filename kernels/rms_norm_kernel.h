// Raw-pointer interface of the fused RMSNorm CUDA kernel (no LibTorch here): one params struct
// with sizes and pointers; optionally adds a residual first and stores the sum.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

struct RmsNormParams {
  const void* x = nullptr;         // [rows, cols], row stride `stride` elements
  const void* residual = nullptr;  // optional [rows, cols] contiguous, added to x first
  const void* weight = nullptr;    // [cols]
  void* out = nullptr;             // [rows, cols] contiguous: weight * norm(x (+ residual))
  void* sum_out = nullptr;         // [rows, cols] contiguous: x + residual (with residual only)
  std::int64_t rows = 0, cols = 0, stride = 0;
  float eps = 1e-6f;
  ElementType type = ElementType::kFloat32;
};

// Returns the CUDA error code of the launch (0 on success).
int launch_rms_norm(const RmsNormParams& params, void* stream);

}  // namespace ponder::kernels
