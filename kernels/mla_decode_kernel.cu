#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mla_decode_kernel.h"

namespace ponder::kernels {
namespace {

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

// c += a (16x16, row) * b (16x8, col), BF16 in, FP32 accumulate.
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                    std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16-byte global -> shared copy; src_bytes = 0 writes zeros instead (tokens past the context,
// whose slots may hold anything, NaN included).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
  const auto d = static_cast<std::uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void load_page(Smem& s, int stage, const __nv_bfloat16* page,
                                          int valid) {
  constexpr int kChunks = kMlaEntry / 8;  // 16-byte chunks per token
  for (int c = threadIdx.x; c < kMlaPage * kChunks; c += kThreads) {
    const int token = c / kChunks, col = (c % kChunks) * 8;
    cp_async16(&s.kv[stage][token][col], page + token * kMlaEntry + col, token < valid ? 16 : 0);
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

__global__ void __launch_bounds__(kThreads) mla_decode_split_kernel(MlaDecodeParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  const int split = blockIdx.x, head0 = blockIdx.y * kHeads, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const std::int64_t ctx = p.context_lens[b];
  const int pages = static_cast<int>((ctx + kMlaPage - 1) / kMlaPage);
  const int per_split = (pages + p.splits - 1) / p.splits;
  const int first = split * per_split, last = min(pages, first + per_split);
  const auto* cache = static_cast<const __nv_bfloat16*>(p.cache);
  const std::int64_t* table = p.block_tables + b * p.table_stride;
  auto valid_in = [&](int page) {
    const std::int64_t left = ctx - std::int64_t{page} * kMlaPage;
    return static_cast<int>(left < kMlaPage ? left : kMlaPage);
  };
  if (first < last) load_page(s, 0, cache + table[first] * kMlaPage * kMlaEntry, valid_in(first));
  const auto* q = static_cast<const __nv_bfloat16*>(p.q) + (b * p.heads + head0) * kMlaEntry;
  for (int c = threadIdx.x; c < kHeads * kMlaEntry / 8; c += kThreads) {
    const int h = c / (kMlaEntry / 8), col = (c % (kMlaEntry / 8)) * 8;
    *reinterpret_cast<uint4*>(&s.q[h][col]) =
        *reinterpret_cast<const uint4*>(q + h * kMlaEntry + col);
  }
  float o[kDimsPerWarp / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};  // heads g and g + 8
  const float scale = p.scale * kLog2e;
  for (int page = first; page < last; ++page) {
    const int stage = (page - first) & 1;
    if (page + 1 < last) {
      load_page(s, stage ^ 1, cache + table[page + 1] * kMlaPage * kMlaEntry, valid_in(page + 1));
      asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();
    // Scores of heads (g, g + 8) x tokens 16 * warp + 8 * nt + (2t, 2t + 1).
    float sc[2][4] = {};
    for (int k = 0; k < kMlaEntry; k += 16) {
      const std::uint32_t a[4] = {ld32(&s.q[g][k + 2 * t]), ld32(&s.q[g + 8][k + 2 * t]),
                                  ld32(&s.q[g][k + 2 * t + 8]), ld32(&s.q[g + 8][k + 2 * t + 8])};
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        const __nv_bfloat16* key = s.kv[stage][16 * warp + 8 * nt + g];
        mma(sc[nt], a, ld32(key + k + 2 * t), ld32(key + k + 2 * t + 8));
      }
    }
    const int valid = valid_in(page);
    float local_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int token = 16 * warp + 8 * nt + 2 * t + (j & 1);
        sc[nt][j] = token < valid ? sc[nt][j] * scale : -INFINITY;
        local_max[j / 2] = fmaxf(local_max[j / 2], sc[nt][j]);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      local_max[r] = fmaxf(local_max[r], __shfl_xor_sync(0xffffffffu, local_max[r], 1));
      local_max[r] = fmaxf(local_max[r], __shfl_xor_sync(0xffffffffu, local_max[r], 2));
      if (t == 0) s.max[warp][g + 8 * r] = local_max[r];
    }
    __syncthreads();
    float alpha[2], base[2], local_sum[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m = row_max[r];
      for (int w = 0; w < kWarps; ++w) m = fmaxf(m, s.max[w][g + 8 * r]);
      base[r] = m == -INFINITY ? 0.f : m;
      alpha[r] = exp2f(row_max[r] - base[r]);
      row_max[r] = m;
    }
#pragma unroll
    for (int nt = 0; nt < 2; ++nt)
#pragma unroll
      for (int j = 0; j < 4; j += 2) {
        const int r = j / 2;
        const __nv_bfloat16 p0 = __float2bfloat16(exp2f(sc[nt][j] - base[r]));
        const __nv_bfloat16 p1 = __float2bfloat16(exp2f(sc[nt][j + 1] - base[r]));
        local_sum[r] += __bfloat162float(p0) + __bfloat162float(p1);
        *reinterpret_cast<std::uint32_t*>(&s.p[g + 8 * r][16 * warp + 8 * nt + 2 * t]) =
            pack(p0, p1);
      }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      local_sum[r] += __shfl_xor_sync(0xffffffffu, local_sum[r], 1);
      local_sum[r] += __shfl_xor_sync(0xffffffffu, local_sum[r], 2);
      if (t == 0) s.sum[warp][g + 8 * r] = local_sum[r];
    }
#pragma unroll
    for (int nt = 0; nt < kDimsPerWarp / 8; ++nt)
      o[nt][0] *= alpha[0], o[nt][1] *= alpha[0], o[nt][2] *= alpha[1], o[nt][3] *= alpha[1];
    __syncthreads();
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float total = 0.f;
      for (int w = 0; w < kWarps; ++w) total += s.sum[w][g + 8 * r];
      row_sum[r] = row_sum[r] * alpha[r] + total;
    }
    // o += P (16 heads x 64 tokens) @ latent (64 tokens x this warp's 128 dims).
#pragma unroll
    for (int kk = 0; kk < kMlaPage; kk += 16) {
      const std::uint32_t a[4] = {ld32(&s.p[g][kk + 2 * t]), ld32(&s.p[g + 8][kk + 2 * t]),
                                  ld32(&s.p[g][kk + 2 * t + 8]), ld32(&s.p[g + 8][kk + 2 * t + 8])};
      const auto& kv = s.kv[stage];
#pragma unroll
      for (int nt = 0; nt < kDimsPerWarp / 8; ++nt) {
        const int d = kDimsPerWarp * warp + 8 * nt + g;
        mma(o[nt], a, pack(kv[kk + 2 * t][d], kv[kk + 2 * t + 1][d]),
            pack(kv[kk + 2 * t + 8][d], kv[kk + 2 * t + 9][d]));
      }
    }
    __syncthreads();  // the stage is refilled next iteration
  }
  // Partial result of this range: o / sum, and its log2-sum-exp (-inf when the range is empty).
  const std::int64_t row = (std::int64_t{b} * p.heads + head0) * p.splits + split;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int h = g + 8 * r;
    const float inv = row_sum[r] > 0.f ? 1.f / row_sum[r] : 0.f;
    float* out = p.partial_out + (row + std::int64_t{h} * p.splits) * kMlaLatent;
#pragma unroll
    for (int nt = 0; nt < kDimsPerWarp / 8; ++nt) {
      const int d = kDimsPerWarp * warp + 8 * nt + 2 * t;
      *reinterpret_cast<float2*>(out + d) = make_float2(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
    }
    if (warp == 0 && t == 0)
      p.partial_lse[row + std::int64_t{h} * p.splits] =
          row_sum[r] > 0.f ? row_max[r] + log2f(row_sum[r]) : -INFINITY;
  }
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
