#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mla_decode_kernel.h"
#include "kernels/mma.cuh"

namespace ponder::kernels {
namespace {

using device::cp_async16;
using device::mma;

// One CTA: 4 warps, 16 heads of one sequence, one range of its pages. Per page, warp w scores
// tokens [16w, 16w + 16) for all 16 heads over the 576-wide entries (tensor cores, mma.sync
// m16n8k16), the block shares one online softmax, and warp w accumulates output dims
// [128w, 128w + 128) of P @ latent. Pages stream through shared memory two at a time (cp.async).
constexpr int kWarps = 4, kThreads = kWarps * 32, kHeads = 16;
constexpr int kRow = kMlaEntry + 8;  // padded shared-memory rows: conflict-free fragment loads
constexpr int kPRow = kMlaPage + 8;
constexpr int kDimsPerWarp = kMlaLatent / kWarps;
constexpr float kLog2e = 1.4426950408889634f;

struct Smem {
  __nv_bfloat16 q[kHeads][kRow];
  __nv_bfloat16 kv[2][kMlaPage][kRow];
  __nv_bfloat16 p[kHeads][kPRow];
  float max[kWarps][kHeads], sum[kWarps][kHeads];
};

__device__ __forceinline__ std::uint32_t ld32(const __nv_bfloat16* p) {
  return *reinterpret_cast<const std::uint32_t*>(p);
}

__device__ __forceinline__ std::uint32_t pack(__nv_bfloat16 lo, __nv_bfloat16 hi) {
  return static_cast<std::uint32_t>(__bfloat16_as_ushort(lo)) |
         (static_cast<std::uint32_t>(__bfloat16_as_ushort(hi)) << 16);
}

__device__ __forceinline__ void load_page(Smem& s, int stage, const __nv_bfloat16* page,
                                          int valid) {
  constexpr int kChunks = kMlaEntry / 8;  // 16-byte chunks per token
  for (int c = threadIdx.x; c < kMlaPage * kChunks; c += kThreads) {
    const int token = c / kChunks, col = (c % kChunks) * 8;
    cp_async16(&s.kv[stage][token][col], page + token * kMlaEntry + col, token < valid ? 16 : 0);
  }
  device::cp_async_commit();
}

// This thread's place in the mma fragments: warp, group g (heads g and g + 8) and t in group.
struct Lane {
  int warp, g, t;
};

// Per-thread state of one CTA: output fragments of heads (g, g + 8) x this warp's 128 dims, and
// those two heads' running max (log2 units) and sum of exponentials.
struct Acc {
  float o[kDimsPerWarp / 8][4] = {};
  float max[2] = {-INFINITY, -INFINITY}, sum[2] = {0.f, 0.f};
};

__device__ void load_query(Smem& s, const MlaDecodeParams& p, int b, int head0) {
  const auto* q = static_cast<const __nv_bfloat16*>(p.q) + (b * p.heads + head0) * kMlaEntry;
  for (int c = threadIdx.x; c < kHeads * kMlaEntry / 8; c += kThreads) {
    const int h = c / (kMlaEntry / 8), col = (c % (kMlaEntry / 8)) * 8;
    *reinterpret_cast<uint4*>(&s.q[h][col]) =
        *reinterpret_cast<const uint4*>(q + h * kMlaEntry + col);
  }
}

// sc[nt][j]: scale * q . entry (log2 units) of head g + 8 * (j / 2) and token
// 16 * warp + 8 * nt + 2t + (j & 1) of the page; -inf for tokens past `valid`.
__device__ void score_page(const Smem& s, int stage, const Lane& l, int valid, float scale,
                           float (&sc)[2][4]) {
  const int g = l.g, t = l.t;
  for (int k = 0; k < kMlaEntry; k += 16) {
    const std::uint32_t a[4] = {ld32(&s.q[g][k + 2 * t]), ld32(&s.q[g + 8][k + 2 * t]),
                                ld32(&s.q[g][k + 2 * t + 8]), ld32(&s.q[g + 8][k + 2 * t + 8])};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const __nv_bfloat16* key = s.kv[stage][16 * l.warp + 8 * nt + g];
      mma(sc[nt], a, ld32(key + k + 2 * t), ld32(key + k + 2 * t + 8));
    }
  }
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int token = 16 * l.warp + 8 * nt + 2 * t + (j & 1);
      sc[nt][j] = token < valid ? sc[nt][j] * scale : -INFINITY;
    }
}

// Sum (or max) over the 4 lanes of a group, then over the 4 warps through `shared`.
template <bool kMax>
__device__ void reduce_heads(float (&v)[2], float (&shared)[kWarps][kHeads], const Lane& l) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    for (int o = 1; o <= 2; o *= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v[r], o);
      v[r] = kMax ? fmaxf(v[r], other) : v[r] + other;
    }
    if (l.t == 0) shared[l.warp][l.g + 8 * r] = v[r];
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    v[r] = kMax ? -INFINITY : 0.f;
    for (int w = 0; w < kWarps; ++w)
      v[r] = kMax ? fmaxf(v[r], shared[w][l.g + 8 * r]) : v[r] + shared[w][l.g + 8 * r];
  }
}

// The block's online softmax step for one page: new maxima, P = 2^(sc - max) in BF16 into shared
// memory, the output rescaled and the sums updated (with the BF16 probabilities used for P @ V).
__device__ void softmax_page(Smem& s, const Lane& l, const float (&sc)[2][4], Acc& acc) {
  float page_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int j = 0; j < 4; ++j) page_max[j / 2] = fmaxf(page_max[j / 2], sc[nt][j]);
  reduce_heads<true>(page_max, s.max, l);
  float alpha[2], base[2], page_sum[2] = {0.f, 0.f};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float m = fmaxf(acc.max[r], page_max[r]);
    base[r] = m == -INFINITY ? 0.f : m;
    alpha[r] = exp2f(acc.max[r] - base[r]);
    acc.max[r] = m;
  }
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const __nv_bfloat16 p0 = __float2bfloat16(exp2f(sc[nt][2 * r] - base[r]));
      const __nv_bfloat16 p1 = __float2bfloat16(exp2f(sc[nt][2 * r + 1] - base[r]));
      page_sum[r] += __bfloat162float(p0) + __bfloat162float(p1);
      *reinterpret_cast<std::uint32_t*>(&s.p[l.g + 8 * r][16 * l.warp + 8 * nt + 2 * l.t]) =
          pack(p0, p1);
    }
#pragma unroll
  for (int nt = 0; nt < kDimsPerWarp / 8; ++nt)
    acc.o[nt][0] *= alpha[0], acc.o[nt][1] *= alpha[0], acc.o[nt][2] *= alpha[1],
        acc.o[nt][3] *= alpha[1];
  reduce_heads<false>(page_sum, s.sum, l);  // its barrier also publishes P
#pragma unroll
  for (int r = 0; r < 2; ++r) acc.sum[r] = acc.sum[r] * alpha[r] + page_sum[r];
}

// acc.o += P (16 heads x 64 tokens) @ latent (64 tokens x this warp's 128 dims).
__device__ void accumulate_page(const Smem& s, int stage, const Lane& l, Acc& acc) {
  const int g = l.g, t = l.t;
  const auto& kv = s.kv[stage];
#pragma unroll
  for (int kk = 0; kk < kMlaPage; kk += 16) {
    const std::uint32_t a[4] = {ld32(&s.p[g][kk + 2 * t]), ld32(&s.p[g + 8][kk + 2 * t]),
                                ld32(&s.p[g][kk + 2 * t + 8]), ld32(&s.p[g + 8][kk + 2 * t + 8])};
#pragma unroll
    for (int nt = 0; nt < kDimsPerWarp / 8; ++nt) {
      const int d = kDimsPerWarp * l.warp + 8 * nt + g;
      mma(acc.o[nt], a, pack(kv[kk + 2 * t][d], kv[kk + 2 * t + 1][d]),
          pack(kv[kk + 2 * t + 8][d], kv[kk + 2 * t + 9][d]));
    }
  }
}

// This range's result: o / sum, and its log2-sum-exp (-inf when the range is empty).
__device__ void write_partial(const MlaDecodeParams& p, int b, int head0, int split, const Lane& l,
                              const Acc& acc) {
  const std::int64_t row = (std::int64_t{b} * p.heads + head0) * p.splits + split;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const std::int64_t at = row + std::int64_t{l.g + 8 * r} * p.splits;
    const float inv = acc.sum[r] > 0.f ? 1.f / acc.sum[r] : 0.f;
    float* out = p.partial_out + at * kMlaLatent;
#pragma unroll
    for (int nt = 0; nt < kDimsPerWarp / 8; ++nt) {
      const int d = kDimsPerWarp * l.warp + 8 * nt + 2 * l.t;
      *reinterpret_cast<float2*>(out + d) =
          make_float2(acc.o[nt][2 * r] * inv, acc.o[nt][2 * r + 1] * inv);
    }
    if (l.warp == 0 && l.t == 0)
      p.partial_lse[at] = acc.sum[r] > 0.f ? acc.max[r] + log2f(acc.sum[r]) : -INFINITY;
  }
}

__global__ void __launch_bounds__(kThreads) mla_decode_split_kernel(MlaDecodeParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  const int split = blockIdx.x, head0 = blockIdx.y * kHeads, b = blockIdx.z;
  const Lane l{static_cast<int>(threadIdx.x) / 32, static_cast<int>(threadIdx.x) % 32 / 4,
               static_cast<int>(threadIdx.x) % 4};
  const std::int64_t ctx = p.context_lens[b];
  const int pages = static_cast<int>((ctx + kMlaPage - 1) / kMlaPage);
  const int per_split = (pages + p.splits - 1) / p.splits;
  const int first = split * per_split, last = min(pages, first + per_split);
  const std::int64_t* table = p.block_tables + b * p.table_stride;
  const auto valid_in = [&](int page) {
    const std::int64_t left = ctx - std::int64_t{page} * kMlaPage;
    return static_cast<int>(left < kMlaPage ? left : kMlaPage);
  };
  const auto load = [&](int stage, int page) {
    load_page(s, stage,
              static_cast<const __nv_bfloat16*>(p.cache) + table[page] * kMlaPage * kMlaEntry,
              valid_in(page));
  };
  if (first < last) load(0, first);
  load_query(s, p, b, head0);
  Acc acc;
  for (int page = first; page < last; ++page) {
    const int stage = (page - first) & 1;
    if (page + 1 < last) {
      load(stage ^ 1, page + 1);
      device::cp_async_wait<1>();
    } else {
      device::cp_async_wait<0>();
    }
    __syncthreads();
    float sc[2][4] = {};
    score_page(s, stage, l, valid_in(page), p.scale * kLog2e, sc);
    softmax_page(s, l, sc, acc);
    accumulate_page(s, stage, l, acc);
    __syncthreads();  // the stage is refilled next iteration
  }
  write_partial(p, b, head0, split, l, acc);
}

// One CTA of 128 threads per (sequence, head): weights 2^(lse_s - max) over the ranges.
__global__ void __launch_bounds__(128) mla_decode_combine_kernel(MlaDecodeParams p) {
  const std::int64_t row = blockIdx.x;  // b * heads + h
  const float* lse = p.partial_lse + row * p.splits;
  float m = -INFINITY;
  for (int i = 0; i < p.splits; ++i) m = fmaxf(m, lse[i]);
  float acc[4] = {}, total = 0.f;
  for (int i = 0; i < p.splits; ++i) {
    if (lse[i] == -INFINITY) continue;
    const float w = exp2f(lse[i] - m);
    total += w;
    const float4 v = *reinterpret_cast<const float4*>(
        p.partial_out + (row * p.splits + i) * kMlaLatent + 4 * threadIdx.x);
    acc[0] += w * v.x, acc[1] += w * v.y, acc[2] += w * v.z, acc[3] += w * v.w;
  }
  auto* out = static_cast<__nv_bfloat16*>(p.out) + row * kMlaLatent + 4 * threadIdx.x;
  for (int j = 0; j < 4; ++j) out[j] = __float2bfloat16(acc[j] / total);
}

}  // namespace

int launch_mla_decode(const MlaDecodeParams& p, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  const int smem = static_cast<int>(sizeof(Smem));
  cudaError_t rc = cudaFuncSetAttribute(mla_decode_split_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  const dim3 grid(p.splits, p.heads / kHeads, p.batch);
  mla_decode_split_kernel<<<grid, kThreads, smem, st>>>(p);
  if ((rc = cudaGetLastError()) != cudaSuccess) return static_cast<int>(rc);
  mla_decode_combine_kernel<<<p.batch * p.heads, kMlaLatent / 4, 0, st>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
