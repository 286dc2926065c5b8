// Raw-pointer interface of the fused RMSNorm CUDA kernel (no LibTorch here): one params struct
// with sizes and pointers, one launcher per dtype.
#pragma once

#include <cstdint>

namespace ponder::kernels {

enum class ElementType { kFloat32, kBFloat16, kFloat16 };

struct RmsNormParams {
  const void* x = nullptr;       // [rows, cols], row stride `stride` elements
  const void* weight = nullptr;  // [cols]
  void* out = nullptr;           // [rows, cols] contiguous
  std::int64_t rows = 0, cols = 0, stride = 0;
  float eps = 1e-6f;
  ElementType type = ElementType::kFloat32;
};

// Returns the CUDA error code of the launch (0 on success).
int launch_rms_norm(const RmsNormParams& params, void* stream);

}  // namespace ponder::kernels
