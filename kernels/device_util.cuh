// Helpers shared by the .cu kernels: element conversion, 16-byte packs, block reductions over
// float and 64-bit integers, and the host-side dispatch from ElementType to the CUDA type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels::device {

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ __forceinline__ float to_float(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float v) {
  return __float2bfloat16(v);
}
template <>
__device__ __forceinline__ __half from_float(float v) {
  return __float2half(v);
}

// Rounds a float to T and back: where the ATen reference stores an intermediate in T.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// kN elements of T loaded or stored as one access (16 bytes when kN * sizeof(T) == 16).
template <typename T, int kN>
struct alignas(sizeof(T) * kN) Pack {
  T v[kN];
};

template <typename T, int kN>
__device__ __forceinline__ Pack<T, kN> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, kN>*>(p);
}

template <typename T, int kN>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, kN>& v) {
  *reinterpret_cast<Pack<T, kN>*>(p) = v;
}

// Sum over a warp (float or unsigned long long); every lane gets it.
template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of kThreads threads; `scratch` holds kThreads / 32 values. Every thread gets
// the result. Ends with a barrier, so scratch may be reused right after.
template <int kThreads, typename V>
__device__ V block_sum(V v, V* scratch) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  V total = 0;
  for (int i = 0; i < kThreads / 32; ++i) total += scratch[i];
  __syncthreads();
  return total;
}

template <int kThreads>
__device__ float block_max(float v, float* scratch) {
  v = warp_max(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float result = -INFINITY;
  for (int i = 0; i < kThreads / 32; ++i) result = fmaxf(result, scratch[i]);
  __syncthreads();
  return result;
}

}  // namespace ponder::kernels::device

namespace ponder::kernels {

// launch(T{}) with T the CUDA element type of `type` (float, __nv_bfloat16, __half); returns what
// it returns, or cudaErrorInvalidValue for an unknown type.
template <typename Launch>
int dispatch_element_type(ElementType type, Launch&& launch) {
  switch (type) {
    case ElementType::kFloat32:
      return launch(float{});
    case ElementType::kBFloat16:
      return launch(__nv_bfloat16{});
    case ElementType::kFloat16:
      return launch(__half{});
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace ponder::kernels
