#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/elementwise_kernel.h"

namespace ponder::kernels {
namespace {

using device::from_float;
using device::Pack;
using device::round_to;
using device::to_float;

constexpr int kThreads = 256;

// silu in FP32 rounded to T, times up rounded to T: the two ATen ops of the reference.
template <typename T>
__device__ __forceinline__ T swiglu_one(T g, T u) {
  const float x = to_float(g);
  const float silu = round_to<T>(x / (1.0f + expf(-x)));
  return from_float<T>(__fmul_rn(silu, to_float(u)));
}

// Grid-stride over packs of kVec elements of a [rows, cols] view.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) swiglu_kernel(SwigluParams p) {
  const std::int64_t packs_per_row = p.cols / kVec, total = p.rows * packs_per_row;
  for (std::int64_t i = blockIdx.x * std::int64_t{kThreads} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * kThreads) {
    const std::int64_t r = i / packs_per_row, c = (i % packs_per_row) * kVec;
    const auto g =
        device::load_pack<T, kVec>(static_cast<const T*>(p.gate) + r * p.gate_stride + c);
    const auto u = device::load_pack<T, kVec>(static_cast<const T*>(p.up) + r * p.up_stride + c);
    Pack<T, kVec> o;
#pragma unroll
    for (int j = 0; j < kVec; ++j) o.v[j] = swiglu_one(g.v[j], u.v[j]);
    device::store_pack(static_cast<T*>(p.out) + r * p.cols + c, o);
  }
}

// a * c - b * s and b * c + a * s with cos/sin, each product and the sum rounded to T (no fused
// multiply-add), as the ATen reference computes them.
template <typename T>
__device__ __forceinline__ void rotate(float a, float b, float c, float s, T& first, T& second) {
  const float cr = round_to<T>(c), sr = round_to<T>(s);
  first = from_float<T>(__fsub_rn(round_to<T>(__fmul_rn(a, cr)), round_to<T>(__fmul_rn(b, sr))));
  second = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(b, cr)), round_to<T>(__fmul_rn(a, sr))));
}

// One thread per kPairs consecutive pairs of one (token, head) row: vector loads of x and the
// tables, two vector stores (rotated firsts, rotated seconds).
template <typename T, int kPairs>
__global__ void __launch_bounds__(kThreads) rope_kernel(RopeParams p) {
  if (p.launch_dependents) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  const std::int64_t half = p.dim / 2, groups = half / kPairs, total = p.tokens * p.heads * groups;
  for (std::int64_t i = blockIdx.x * std::int64_t{kThreads} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * kThreads) {
    const std::int64_t th = i / groups, k = (i - th * groups) * kPairs;
    const std::int64_t t = th / p.heads, h = th - t * p.heads;
    const T* x = static_cast<const T*>(p.x) + t * p.token_stride + h * p.head_stride;
    const auto c = device::load_pack<float, kPairs>(p.cos + t * half + k);
    const auto s = device::load_pack<float, kPairs>(p.sin + t * half + k);
    float a[kPairs], b[kPairs];
    if (p.interleaved && kPairs == 1) {  // the unaligned fallback: scalar loads
      a[0] = to_float(x[2 * k]), b[0] = to_float(x[2 * k + 1]);
    } else if (p.interleaved) {
      const auto v = device::load_pack<T, 2 * kPairs>(x + 2 * k);
#pragma unroll
      for (int j = 0; j < kPairs; ++j) a[j] = to_float(v.v[2 * j]), b[j] = to_float(v.v[2 * j + 1]);
    } else {
      const auto va = device::load_pack<T, kPairs>(x + k),
                 vb = device::load_pack<T, kPairs>(x + k + half);
#pragma unroll
      for (int j = 0; j < kPairs; ++j) a[j] = to_float(va.v[j]), b[j] = to_float(vb.v[j]);
    }
    Pack<T, kPairs> first, second;
#pragma unroll
    for (int j = 0; j < kPairs; ++j) rotate(a[j], b[j], c.v[j], s.v[j], first.v[j], second.v[j]);
    T* out = static_cast<T*>(p.out) + t * p.out_token_stride + h * p.out_head_stride;
    device::store_pack(out + k, first);
    device::store_pack(out + k + half, second);
  }
}

constexpr int kRowsPerBlock = kThreads / 32;

// One warp per token: the latent's FP32 sum of squares reduced over the warp, the normed latent
// (kVec elements per access, as rms_norm_kernel rounds), then one RoPE pair per lane.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) mla_cache_write_kernel(MlaCacheWriteParams p) {
  const int lane = threadIdx.x % 32;
  const std::int64_t t = std::int64_t{blockIdx.x} * kRowsPerBlock + threadIdx.x / 32;
  if (t >= p.tokens) return;
  const T* x = static_cast<const T*>(p.kv_a) + t * p.stride;
  const T* w = static_cast<const T*>(p.weight);
  T* out = static_cast<T*>(p.pages) + p.slots[t] * (p.lora + p.rope);
  float sum = 0.f;
  for (std::int64_t i = lane * kVec; i < p.lora; i += 32 * kVec) {
    const auto v = device::load_pack<T, kVec>(x + i);
#pragma unroll
    for (int j = 0; j < kVec; ++j) sum += to_float(v.v[j]) * to_float(v.v[j]);
  }
  const float inv_rms = rsqrtf(device::warp_sum(sum) / static_cast<float>(p.lora) + p.eps);
  for (std::int64_t i = lane * kVec; i < p.lora; i += 32 * kVec) {
    const auto v = device::load_pack<T, kVec>(x + i);
    const auto wv = device::load_pack<T, kVec>(w + i);
    Pack<T, kVec> o;
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      o.v[j] = from_float<T>(to_float(wv.v[j]) * round_to<T>(to_float(v.v[j]) * inv_rms));
    device::store_pack(out + i, o);
  }
  const std::int64_t half = p.rope / 2;
  for (std::int64_t k = lane; k < half; k += 32)
    rotate(to_float(x[p.lora + 2 * k]), to_float(x[p.lora + 2 * k + 1]), p.cos[t * half + k],
           p.sin[t * half + k], out[p.lora + k], out[p.lora + half + k]);
}

constexpr std::int64_t kMaxBlocks = 4096;  // grid-stride loops cover larger work

unsigned grid_for(std::int64_t work) {
  const std::int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, kMaxBlocks));
}

template <typename T>
int swiglu_typed(const SwigluParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto aligned = [](const void* ptr) {
    return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
  };
  if (p.cols % kVec == 0 && p.gate_stride % kVec == 0 && p.up_stride % kVec == 0 &&
      aligned(p.gate) && aligned(p.up) && aligned(p.out))
    swiglu_kernel<T, kVec><<<grid_for(p.rows * p.cols / kVec), kThreads, 0, stream>>>(p);
  else
    swiglu_kernel<T, 1><<<grid_for(p.rows * p.cols), kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int rope_typed(const RopeParams& p, cudaStream_t stream) {
  constexpr int kPairs = 4;
  const std::int64_t half = p.dim / 2;
  const auto aligned = [](const void* ptr, std::size_t bytes) {
    return reinterpret_cast<std::uintptr_t>(ptr) % bytes == 0;
  };
  // Vector accesses need every row start aligned to the widest pack (interleaved: 2 * kPairs).
  const bool vector = half % kPairs == 0 && p.token_stride % (2 * kPairs) == 0 &&
                      p.head_stride % (2 * kPairs) == 0 && aligned(p.x, 2 * kPairs * sizeof(T)) &&
                      p.out_token_stride % kPairs == 0 && p.out_head_stride % kPairs == 0 &&
                      aligned(p.out, kPairs * sizeof(T)) && aligned(p.cos, 16) &&
                      aligned(p.sin, 16);
  const std::int64_t pairs = p.tokens * p.heads * half;
  if (vector)
    rope_kernel<T, kPairs><<<grid_for(pairs / kPairs), kThreads, 0, stream>>>(p);
  else
    rope_kernel<T, 1><<<grid_for(pairs), kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int mla_cache_write_typed(const MlaCacheWriteParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto aligned = [](const void* ptr) {
    return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
  };
  const dim3 grid(static_cast<unsigned>((p.tokens + kRowsPerBlock - 1) / kRowsPerBlock));
  if (p.lora % kVec == 0 && p.stride % kVec == 0 && (p.lora + p.rope) % kVec == 0 &&
      aligned(p.kv_a) && aligned(p.weight) && aligned(p.pages))
    mla_cache_write_kernel<T, kVec><<<grid, kThreads, 0, stream>>>(p);
  else
    mla_cache_write_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_mla_cache_write(const MlaCacheWriteParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(
      p.type, [&](auto element) { return mla_cache_write_typed<decltype(element)>(p, s); });
}

int launch_swiglu(const SwigluParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(p.type,
                               [&](auto element) { return swiglu_typed<decltype(element)>(p, s); });
}

int launch_rope(const RopeParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(p.type,
                               [&](auto element) { return rope_typed<decltype(element)>(p, s); });
}

}  // namespace ponder::kernels
