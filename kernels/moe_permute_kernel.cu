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

// v[0, n) -> its exclusive prefix sums, in place, by one block of kBlock threads.
template <int kBlock>
__device__ void block_exclusive_scan(std::int32_t* v, std::int64_t n) {
  constexpr int kBlockWarps = kBlock / 32;
  __shared__ int warp_sums[kBlockWarps];
  __shared__ int carry;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (std::int64_t base = 0; base < n; base += kBlock) {
    const std::int64_t idx = base + threadIdx.x;
    const int x = idx < n ? v[idx] : 0;
    const int in_warp = warp_scan(x);
    if (lane == 31) warp_sums[warp] = in_warp;
    __syncthreads();
    if (warp == 0) {
      const int sums = warp_scan(lane < kBlockWarps ? warp_sums[lane] : 0);
      if (lane < kBlockWarps) warp_sums[lane] = sums;
    }
    __syncthreads();
    const int before = carry + (warp > 0 ? warp_sums[warp - 1] : 0) + in_warp - x;
    if (idx < n) v[idx] = before;
    __syncthreads();  // every thread has read carry
    if (threadIdx.x == kBlock - 1) carry = before + x;
    __syncthreads();
  }
}

// ends[e] = the first sorted row of expert e + 1, from `starts` (exclusive sums of the counts in
// expert-major order, `tiles` per expert) that the whole block has written.
__device__ void write_ends(const ExpertSortParams& p, const std::int32_t* starts, int tiles) {
  for (int e = threadIdx.x; e < p.experts_count; e += blockDim.x)
    p.ends[e] = e + 1 < p.experts_count ? starts[std::int64_t{e + 1} * tiles]
                                        : static_cast<std::int32_t>(p.pairs);
}

// One block: counts -> each tile's first sorted row per expert, and ends.
__global__ void __launch_bounds__(kScanThreads) scan_kernel(ExpertSortParams p) {
  const int tiles = tiles_of(p.pairs);
  std::int32_t* counts = scratch_of(p).counts;
  block_exclusive_scan<kScanThreads>(counts, std::int64_t{p.experts_count} * tiles);
  write_ends(p, counts, tiles);
}

// Pair i at sorted row pos: order/position there, and its token's row of x copied to rows in
// units of U by the calling warp.
template <typename U>
__device__ void place(const ExpertSortParams& p, std::int64_t i, std::int64_t pos) {
  const int lane = threadIdx.x % 32;
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

// One warp per pair: its sorted row from the scan and its rank.
template <typename U>
__global__ void __launch_bounds__(kThreads) scatter_kernel(ExpertSortParams p) {
  const std::int64_t i = std::int64_t{blockIdx.x} * kWarps + threadIdx.x / 32;
  if (i >= p.pairs) return;
  const Scratch s = scratch_of(p);
  place<U>(p, i,
           s.counts[std::int64_t{expert_of(p, i)} * tiles_of(p.pairs) + i / kThreads] + s.rank[i]);
}

// The last block of a ranked sort: ends from a histogram of every pair's expert.
__device__ void ranked_ends(const ExpertSortParams& p) {
  __shared__ std::int32_t counts[kPermuteMaxExperts];
  for (int e = threadIdx.x; e < p.experts_count; e += kThreads) counts[e] = 0;
  __syncthreads();
  for (std::int64_t j = threadIdx.x; j < p.pairs; j += kThreads)
    atomicAdd(&counts[expert_of(p, j)], 1);
  __syncthreads();
  block_exclusive_scan<kThreads>(counts, p.experts_count);
  write_ends(p, counts, 1);
}

// Sorts of at most kRankedPairs pairs in one launch: every block but the last reads all pairs'
// experts and counts, for each of its kWarps pairs, the pairs of a lower expert and those of the
// same expert before it (its sorted row), then places them one warp each.
template <typename U>
__global__ void __launch_bounds__(kThreads) ranked_sort_kernel(ExpertSortParams p) {
  if (blockIdx.x == gridDim.x - 1) return ranked_ends(p);
  __shared__ int mine[kWarps];             // the experts of the block's pairs
  __shared__ int partial[kWarps][kWarps];  // [warp][pair of the block]: that warp's counts
  const std::int64_t first = std::int64_t{blockIdx.x} * kWarps;
  if (threadIdx.x < kWarps)
    mine[threadIdx.x] =
        first + threadIdx.x < p.pairs ? expert_of(p, first + threadIdx.x) : p.experts_count;
  __syncthreads();
  int expert[kWarps], below[kWarps] = {};
#pragma unroll
  for (int w = 0; w < kWarps; ++w) expert[w] = mine[w];
#pragma unroll 4
  for (std::int64_t j = threadIdx.x; j < p.pairs; j += kThreads) {
    const int e = expert_of(p, j);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) below[w] += e < expert[w] || (e == expert[w] && j < first + w);
  }
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int in_warp = device::warp_sum(below[w]);
    if (threadIdx.x % 32 == 0) partial[warp][w] = in_warp;
  }
  __syncthreads();
  if (first + warp >= p.pairs) return;
  int pos = 0;
  for (int w = 0; w < kWarps; ++w) pos += partial[w][warp];
  place<U>(p, first + warp, pos);
}

template <typename U>
bool fits(const ExpertSortParams& p) {
  const auto aligned = [](const void* ptr) {
    return reinterpret_cast<std::uintptr_t>(ptr) % sizeof(U) == 0;
  };
  return p.row_bytes % static_cast<std::int64_t>(sizeof(U)) == 0 && aligned(p.x) && aligned(p.rows);
}

bool ranked(std::int64_t pairs) { return pairs <= kRankedPairs; }

// The pass that places the pairs: the scatter after count and scan, or the whole ranked sort.
template <typename U>
void launch_place(const ExpertSortParams& p, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((p.pairs + kWarps - 1) / kWarps);
  if (ranked(p.pairs))
    ranked_sort_kernel<U><<<blocks + 1, kThreads, 0, stream>>>(p);
  else
    scatter_kernel<U><<<blocks, kThreads, 0, stream>>>(p);
}

void launch_placing(const ExpertSortParams& p, cudaStream_t stream) {
  if (fits<uint4>(p))
    launch_place<uint4>(p, stream);
  else if (fits<std::uint32_t>(p))
    launch_place<std::uint32_t>(p, stream);
  else
    launch_place<unsigned char>(p, stream);
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
  return ranked(pairs) ? 0 : std::int64_t{experts} * tiles_of(pairs) + pairs;
}

int launch_expert_sort(const ExpertSortParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  if (!ranked(p.pairs)) {
    const std::size_t smem = sizeof(std::int32_t) * kWarps * p.experts_count;
    count_kernel<<<tiles_of(p.pairs), kThreads, smem, s>>>(p);
    scan_kernel<<<1, kScanThreads, 0, s>>>(p);
  }
  launch_placing(p, s);
  return static_cast<int>(cudaGetLastError());
}

int launch_expert_combine(const ExpertCombineParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(
      p.type, [&](auto element) { return combine_typed<decltype(element)>(p, s); });
}

}  // namespace ponder::kernels
