// RMSNorm of one row by one block, from any loader of the row's values: shared by the RMSNorm
// kernel (x + residual) and the MoE combine that ends in the next layer's norm, so both round
// alike.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"

namespace ponder::kernels::device {

// First pass: load(i, v) gives the FP32 values (already rounded as the reference rounds) of the
// row's elements i .. i + kVec; returns rsqrt(mean of their squares + eps), reduced over the block.
template <int kVec, int kThreads, class Load>
__device__ float row_inv_rms(const Load& load, std::int64_t cols, float eps) {
  float sum = 0.f;
  for (std::int64_t i = threadIdx.x * kVec; i < cols; i += kThreads * kVec) {
    float v[kVec];
    load(i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sum += v[j] * v[j];
  }
  __shared__ float scratch[kThreads / 32];
  const float total = block_sum<kThreads>(sum, scratch);
  return rsqrtf(total / static_cast<float>(cols) + eps);
}

// Second pass (each thread loads the elements it loaded in the first): out = weight *
// T(v * inv_rms), and v itself to sum_out when set.
template <typename T, int kVec, int kThreads, class Load>
__device__ void write_normed_row(const Load& load, const T* weight, T* out, T* sum_out,
                                 std::int64_t cols, float inv_rms) {
  for (std::int64_t i = threadIdx.x * kVec; i < cols; i += kThreads * kVec) {
    float v[kVec];
    load(i, v);
    const Pack<T, kVec> wv = load_pack<T, kVec>(weight + i);
    Pack<T, kVec> o, s;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      o.v[j] = from_float<T>(to_float(wv.v[j]) * round_to<T>(v[j] * inv_rms));
      s.v[j] = from_float<T>(v[j]);
    }
    store_pack(out + i, o);
    if (sum_out) store_pack(sum_out + i, s);
  }
}

}  // namespace ponder::kernels::device
