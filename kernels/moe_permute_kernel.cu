#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/moe_permute_kernel.h"
#include "kernels/rms_norm_row.cuh"

namespace ponder::kernels {
namespace {

using device::from_float;
using device::Pack;
using device::round_to;
using device::to_float;

constexpr int kThreads = kPermuteTile, kWarps = kThreads / 32, kScanThreads = 1024;
constexpr unsigned kAll = 0xffffffffu;

// scratch = [experts x blocks] counts (then their exclusive prefix sums, expert-major) and
// [pairs] ranks of each pair among its tile's pairs of the same expert.
struct Scratch {
  std::int32_t* counts;
  std::int32_t* rank;
};

__host__ __device__ int tiles_of(std::int64_t pairs) {
  return static_cast<int>((pairs + kThreads - 1) / kThreads);
}

__device__ Scratch scratch_of(const ExpertSortParams& p) {
  return {p.scratch, p.scratch + std::int64_t{p.experts_count} * tiles_of(p.pairs)};
}

__device__ __forceinline__ int expert_of(const ExpertSortParams& p, std::int64_t i) {
  const std::int64_t e = p.experts[i];
  return e < 0 || e >= p.experts_count ? p.experts_count - 1 : static_cast<int>(e);
}

// One tile of kThreads pairs per block: each warp ranks its lanes within their expert
// (__match_any_sync), the per-warp counts in shared memory rank them within the tile in pair
// order, and the tile's count per expert goes to counts[e * tiles + tile].
__global__ void __launch_bounds__(kThreads) count_kernel(ExpertSortParams p) {
  extern __shared__ std::int32_t warp_counts[];  // [kWarps][experts]
  const int experts = p.experts_count, tiles = tiles_of(p.pairs);
  const Scratch s = scratch_of(p);
  for (int i = threadIdx.x; i < kWarps * experts; i += kThreads) warp_counts[i] = 0;
  __syncthreads();
  const std::int64_t i = std::int64_t{blockIdx.x} * kThreads + threadIdx.x;
  const bool valid = i < p.pairs;
  const int e = valid ? expert_of(p, i) : -1;
  const unsigned same = __match_any_sync(kAll, e);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int in_warp = __popc(same & ((1u << lane) - 1));
  if (valid && in_warp == 0) warp_counts[warp * experts + e] = __popc(same);
  __syncthreads();
  if (valid) {
    int rank = in_warp;
    for (int w = 0; w < warp; ++w) rank += warp_counts[w * experts + e];
    s.rank[i] = rank;
  }
  for (int x = threadIdx.x; x < experts; x += kThreads) {
    int count = 0;
    for (int w = 0; w < kWarps; ++w) count += warp_counts[w * experts + x];
    s.counts[std::int64_t{x} * tiles + blockIdx.x] = count;
  }
}

// Inclusive sum over a warp.
__device__ __forceinline__ int warp_scan(int v) {
  const int lane = threadIdx.x % 32;
  for (int o = 1; o < 32; o *= 2) {
    const int t = __shfl_up_sync(kAll, v, o);
    if (lane >= o) v += t;
  }
  return v;
}

// One block: counts in expert-major order -> exclusive prefix sums (each tile's first sorted row
// per expert), then ends[e] = the first row of expert e + 1.
__global__ void __launch_bounds__(kScanThreads) scan_kernel(ExpertSortParams p) {
  __shared__ int warp_sums[kScanThreads / 32];
  __shared__ int carry;
  const int tiles = tiles_of(p.pairs), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const std::int64_t n = std::int64_t{p.experts_count} * tiles;
  std::int32_t* counts = scratch_of(p).counts;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (std::int64_t base = 0; base < n; base += kScanThreads) {
    const std::int64_t idx = base + threadIdx.x;
    const int v = idx < n ? counts[idx] : 0;
    const int in_warp = warp_scan(v);
    if (lane == 31) warp_sums[warp] = in_warp;
    __syncthreads();
    if (warp == 0) warp_sums[lane] = warp_scan(warp_sums[lane]);
    __syncthreads();
    const int before = carry + (warp > 0 ? warp_sums[warp - 1] : 0) + in_warp - v;
    if (idx < n) counts[idx] = before;
    __syncthreads();  // every thread has read carry
    if (threadIdx.x == kScanThreads - 1) carry = before + v;
    __syncthreads();
  }
  for (int e = threadIdx.x; e < p.experts_count; e += kScanThreads)
    p.ends[e] = e + 1 < p.experts_count ? counts[std::int64_t{e + 1} * tiles]
                                        : static_cast<std::int32_t>(p.pairs);
}

// One warp per pair: its sorted row from the scan and its rank, order/position there, and its
// token's row of x copied to rows in units of U.
template <typename U>
__global__ void __launch_bounds__(kThreads) scatter_kernel(ExpertSortParams p) {
  const std::int64_t i = std::int64_t{blockIdx.x} * kWarps + threadIdx.x / 32;
  if (i >= p.pairs) return;
  const int lane = threadIdx.x % 32, tiles = tiles_of(p.pairs);
  const Scratch s = scratch_of(p);
  const std::int64_t pos =
      s.counts[std::int64_t{expert_of(p, i)} * tiles + i / kThreads] + s.rank[i];
  if (lane == 0) {
    p.order[pos] = i;
    p.position[i] = pos;
  }
  if (!p.x) return;
  const std::int64_t units = p.row_bytes / static_cast<std::int64_t>(sizeof(U));
  const U* src =
      reinterpret_cast<const U*>(static_cast<const char*>(p.x) + (i / p.k) * p.row_bytes);
  U* dst = reinterpret_cast<U*>(static_cast<char*>(p.rows) + pos * p.row_bytes);
  for (std::int64_t c = lane; c < units; c += 32) dst[c] = src[c];
}

template <typename U>
bool fits(const ExpertSortParams& p) {
  const auto aligned = [](const void* ptr) {
    return reinterpret_cast<std::uintptr_t>(ptr) % sizeof(U) == 0;
  };
  return p.row_bytes % static_cast<std::int64_t>(sizeof(U)) == 0 && aligned(p.x) && aligned(p.rows);
}

void launch_scatter(const ExpertSortParams& p, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((p.pairs + kWarps - 1) / kWarps);
  if (fits<uint4>(p))
    scatter_kernel<uint4><<<blocks, kThreads, 0, stream>>>(p);
  else if (fits<std::uint32_t>(p))
    scatter_kernel<std::uint32_t><<<blocks, kThreads, 0, stream>>>(p);
  else
    scatter_kernel<unsigned char><<<blocks, kThreads, 0, stream>>>(p);
}

// Columns c .. c + kVec of token t's output: the k weighted rows of y summed in FP32, then the
// shared experts' and the residual's rows added, each step rounded to T.
template <typename T, int kVec>
__device__ __forceinline__ void combined_pack(const ExpertCombineParams& p, std::int64_t t,
                                              std::int64_t c, float (&v)[kVec]) {
  const T* y = static_cast<const T*>(p.y);
  float acc[kVec] = {};
  for (int j = 0; j < p.k; ++j) {
    const std::int64_t pair = t * p.k + j;
    const float w = round_to<T>(p.weights[pair]);
    const auto r = device::load_pack<T, kVec>(y + p.position[pair] * p.cols + c);
#pragma unroll
    for (int q = 0; q < kVec; ++q) acc[q] += round_to<T>(__fmul_rn(to_float(r.v[q]), w));
  }
#pragma unroll
  for (int q = 0; q < kVec; ++q) v[q] = round_to<T>(acc[q]);
  for (const void* addend : {p.shared, p.residual}) {
    if (!addend) continue;
    const auto a = device::load_pack<T, kVec>(static_cast<const T*>(addend) + t * p.cols + c);
#pragma unroll
    for (int q = 0; q < kVec; ++q) v[q] = round_to<T>(v[q] + to_float(a.v[q]));
  }
}

// Grid-stride over packs of kVec columns of out.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) combine_kernel(ExpertCombineParams p) {
  const std::int64_t packs_per_row = p.cols / kVec, total = p.tokens * packs_per_row;
  for (std::int64_t i = blockIdx.x * std::int64_t{kThreads} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * kThreads) {
    const std::int64_t t = i / packs_per_row, c = (i % packs_per_row) * kVec;
    float v[kVec];
    combined_pack<T, kVec>(p, t, c, v);
    Pack<T, kVec> o;
#pragma unroll
    for (int q = 0; q < kVec; ++q) o.v[q] = from_float<T>(v[q]);
    device::store_pack(static_cast<T*>(p.out) + t * p.cols + c, o);
  }
}

// One block per token: the combined row (with the residual) stored to out while its squares are
// summed, then the norm pass over out as the RMSNorm kernel runs it.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads) combine_norm_kernel(ExpertCombineParams p) {
  const std::int64_t t = blockIdx.x;
  T* sum = static_cast<T*>(p.out) + t * p.cols;
  const auto combine = [&](std::int64_t c, float(&v)[kVec]) {
    combined_pack<T, kVec>(p, t, c, v);
    Pack<T, kVec> o;
#pragma unroll
    for (int q = 0; q < kVec; ++q) o.v[q] = from_float<T>(v[q]);
    device::store_pack(sum + c, o);
  };
  const float inv_rms = device::row_inv_rms<kVec, kThreads>(combine, p.cols, p.eps);
  const auto reload = [&](std::int64_t c, float(&v)[kVec]) {  // this thread's own stores
    const auto o = device::load_pack<T, kVec>(sum + c);
#pragma unroll
    for (int q = 0; q < kVec; ++q) v[q] = to_float(o.v[q]);
  };
  device::write_normed_row<T, kVec, kThreads>(reload, static_cast<const T*>(p.norm_weight),
                                              static_cast<T*>(p.normed) + t * p.cols, nullptr,
                                              p.cols, inv_rms);
}

unsigned grid_for(std::int64_t work) {
  const std::int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 4096));
}

template <typename T, int kVec>
void launch_combine(const ExpertCombineParams& p, cudaStream_t stream) {
  if (p.residual)
    combine_norm_kernel<T, kVec><<<static_cast<unsigned>(p.tokens), kThreads, 0, stream>>>(p);
  else
    combine_kernel<T, kVec><<<grid_for(p.tokens * p.cols / kVec), kThreads, 0, stream>>>(p);
}

template <typename T>
int combine_typed(const ExpertCombineParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  bool aligned = p.cols % kVec == 0;
  for (const void* ptr : {p.y, p.shared, p.residual, p.norm_weight, static_cast<const void*>(p.out),
                          static_cast<const void*>(p.normed)})
    aligned = aligned && reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0;
  if (aligned)
    launch_combine<T, kVec>(p, stream);
  else
    launch_combine<T, 1>(p, stream);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

std::int64_t expert_sort_scratch(std::int64_t pairs, int experts) {
  return std::int64_t{experts} * tiles_of(pairs) + pairs;
}

int launch_expert_sort(const ExpertSortParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const std::size_t smem = sizeof(std::int32_t) * kWarps * p.experts_count;
  count_kernel<<<tiles_of(p.pairs), kThreads, smem, s>>>(p);
  scan_kernel<<<1, kScanThreads, 0, s>>>(p);
  launch_scatter(p, s);
  return static_cast<int>(cudaGetLastError());
}

int launch_expert_combine(const ExpertCombineParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(
      p.type, [&](auto element) { return combine_typed<decltype(element)>(p, s); });
}

}  // namespace ponder::kernels
