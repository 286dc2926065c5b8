#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/rms_norm_kernel.h"

namespace ponder::kernels {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ T from_float(float v) { return static_cast<T>(v); }
template <>
__device__ __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
template <>
__device__ __half from_float(float v) { return __float2half(v); }

// One block per row: FP32 sum of squares reduced over warps, then a second pass writes
// weight * T(x * inv_rms), rounding where the reference rounds.
template <typename T>
__global__ void rms_norm_kernel(RmsNormParams p) {
  const T* x = static_cast<const T*>(p.x) + blockIdx.x * p.stride;
  const T* w = static_cast<const T*>(p.weight);
  T* out = static_cast<T*>(p.out) + blockIdx.x * p.cols;
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const float v = to_float(x[c]);
    sum += v * v;
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffff, sum, offset);
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float inv_rms;
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
    for (int i = 0; i < kThreads / 32; ++i) total += warp_sums[i];
    inv_rms = rsqrtf(total / static_cast<float>(p.cols) + p.eps);
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < p.cols; c += kThreads) {
    const T normed = from_float<T>(to_float(x[c]) * inv_rms);
    out[c] = from_float<T>(to_float(w[c]) * to_float(normed));
  }
}

}  // namespace

int launch_rms_norm(const RmsNormParams& p, void* stream) {
  const dim3 grid(static_cast<unsigned>(p.rows)), block(kThreads);
  auto s = static_cast<cudaStream_t>(stream);
  switch (p.type) {
    case ElementType::kFloat32: rms_norm_kernel<float><<<grid, block, 0, s>>>(p); break;
    case ElementType::kBFloat16: rms_norm_kernel<__nv_bfloat16><<<grid, block, 0, s>>>(p); break;
    case ElementType::kFloat16: rms_norm_kernel<__half><<<grid, block, 0, s>>>(p); break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
