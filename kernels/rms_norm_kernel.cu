#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/rms_norm_kernel.h"

namespace ponder::kernels {
namespace {

using device::from_float;
using device::load_pack;
using device::Pack;
using device::round_to;
using device::to_float;

constexpr int kThreads = 256;

// x (+ residual, rounded to T as the reference's add is) for pack `i` of the row.
template <typename T, int kVec>
__device__ __forceinline__ void load_input(const RmsNormParams& p, const T* x, const T* res,
                                           std::int64_t i, float (&v)[kVec]) {
  const Pack<T, kVec> a = load_pack<T, kVec>(x + i);
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = to_float(a.v[j]);
  if (res == nullptr) return;
  const Pack<T, kVec> b = load_pack<T, kVec>(res + i);
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = round_to<T>(v[j] + to_float(b.v[j]));
}

// One block per row, kVec elements per access: FP32 sum of squares reduced over the block, then a
// second pass (re-reading the row from cache) writes weight * T(x * inv_rms), rounding where the
// reference rounds.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) rms_norm_kernel(RmsNormParams p) {
  const std::int64_t row = blockIdx.x;
  const T* x = static_cast<const T*>(p.x) + row * p.stride;
  const T* res = p.residual ? static_cast<const T*>(p.residual) + row * p.cols : nullptr;
  const T* w = static_cast<const T*>(p.weight);
  T* out = static_cast<T*>(p.out) + row * p.cols;
  T* sum_out = p.sum_out ? static_cast<T*>(p.sum_out) + row * p.cols : nullptr;
  float sum = 0.f;
  for (std::int64_t i = threadIdx.x * kVec; i < p.cols; i += kThreads * kVec) {
    float v[kVec];
    load_input<T, kVec>(p, x, res, i, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sum += v[j] * v[j];
  }
  __shared__ float scratch[kThreads / 32];
  const float total = device::block_sum<kThreads>(sum, scratch);
  const float inv_rms = rsqrtf(total / static_cast<float>(p.cols) + p.eps);
  for (std::int64_t i = threadIdx.x * kVec; i < p.cols; i += kThreads * kVec) {
    float v[kVec];
    load_input<T, kVec>(p, x, res, i, v);
    const Pack<T, kVec> wv = load_pack<T, kVec>(w + i);
    Pack<T, kVec> o, s;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      o.v[j] = from_float<T>(to_float(wv.v[j]) * round_to<T>(v[j] * inv_rms));
      s.v[j] = from_float<T>(v[j]);
    }
    device::store_pack(out + i, o);
    if (sum_out) device::store_pack(sum_out + i, s);
  }
}

template <typename T>
int launch_typed(const RmsNormParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto aligned = [](const void* ptr) {
    return ptr == nullptr || reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
  };
  const bool vector = p.cols % kVec == 0 && p.stride % kVec == 0 && aligned(p.x) &&
                      aligned(p.residual) && aligned(p.weight) && aligned(p.out) &&
                      aligned(p.sum_out);
  const dim3 grid(static_cast<unsigned>(p.rows));
  if (vector)
    rms_norm_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(p);
  else
    rms_norm_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_rms_norm(const RmsNormParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(p.type,
                               [&](auto element) { return launch_typed<decltype(element)>(p, s); });
}

}  // namespace ponder::kernels
