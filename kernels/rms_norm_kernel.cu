#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/rms_norm_kernel.h"
#include "kernels/rms_norm_row.cuh"

namespace ponder::kernels {
namespace {

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
  const auto load = [&](std::int64_t i, float(&v)[kVec]) { load_input<T, kVec>(p, x, res, i, v); };
  const float inv_rms = device::row_inv_rms<kVec, kThreads>(load, p.cols, p.eps);
  device::write_normed_row<T, kVec, kThreads>(
      load, static_cast<const T*>(p.weight), static_cast<T*>(p.out) + row * p.cols,
      p.sum_out ? static_cast<T*>(p.sum_out) + row * p.cols : nullptr, p.cols, inv_rms);
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
