// MLA decode on Hopper (sm_90a) for many query heads (DeepSeek-V3's 128): one CTA per (64 heads,
// context range, sequence) reads each cache page once for its 64 heads. The queries stay in
// shared memory, pages stream in by TMA (128-byte swizzle) through an mbarrier ring fed by a
// producer thread, and two warpgroups run S = Q K^T and O += P V on wgmma, softmax in registers.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/mla_decode_kernel.h"
#include "kernels/wgmma.cuh"

namespace ponder::kernels {
namespace {

// Warpgroup w (threads 128 w .. 128 w + 127) scores tokens [32 w, 32 w + 32) of each 64-token
// page for all 64 heads (m64n32k16 over the 576 dims), the two warpgroups exchange their tiles'
// maxima, each writes its probabilities (BF16) into the shared P tile, then each accumulates
// output dims [256 w, 256 w + 256) of P V over the whole page (m64n256k16, V = the page's first
// 512 columns read MN-major: wgmma's transpose bit). Warpgroup 2 issues the copies (one thread).
// Tiles are [9][64][64] blocks of 128-byte rows (one TMA box each); a page's rows past its context
// are cleared in the value blocks before P V (they may hold NaN and P is 0 there).
constexpr int kHeads = 64, kTokens = kMlaPage, kBlocks = kMlaEntry / 64, kStages = 2;
constexpr int kConsumers = 256, kThreads = kConsumers + 128;

using Block = __nv_bfloat16[64][64];
static_assert(sizeof(Block) == 8192, "a block is one 64 x 64 BF16 TMA box");

struct Shared {
  Block q[kBlocks];              // the 64 heads' queries
  Block kv[kStages][kBlocks];    // pages of 64 tokens
  Block p;                       // probabilities, heads x tokens, swizzled as a TMA box
  float max[2][kHeads];          // each warpgroup's maxima of the current tile
  float sum[2][kHeads];          // each warpgroup's sums of exponentials at the end
  std::uint64_t q_full;          // the queries landed
  std::uint64_t full[kStages];   // a page landed (1 arrival + bytes)
  std::uint64_t empty[kStages];  // the consumers are done with a stage (256 arrivals)
};
constexpr int kSmem = static_cast<int>(sizeof(Shared)) + 1024;  // + room to align to 1024
static_assert(kSmem <= 227 * 1024, "fits an H100/H200 CTA's shared memory");

struct Maps {
  CUtensorMap q, cache;  // [batch * heads, 576] and [pages * 64, 576], boxes of 64 x 64
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the device code: the sm_90a pass only

constexpr int kHalfTokens = kTokens / 2, kHalfDims = kMlaLatent / 2, kValueBlocks = kHalfDims / 64;
constexpr int kSyncId = 1;  // named barrier of the two warpgroups
constexpr float kLog2e = 1.4426950408889634f;
// Registers per thread: consumers 232 (128 accumulators for P V, 16 for the scores), the
// producer warpgroup 40: 64,512 of the SM's 65,536 for the CTA's 384 threads.
constexpr int kConsumerRegs = 232, kProducerRegs = 40;

// The pages [first, last) of one sequence this CTA reads.
struct Range {
  std::int64_t ctx;
  int first, last;
};

__device__ __forceinline__ Range range_of(const MlaDecodeParams& p, int split, int b) {
  const std::int64_t ctx = p.context_lens[b];
  const int pages = static_cast<int>((ctx + kTokens - 1) / kTokens);
  const int per_split = (pages + p.splits - 1) / p.splits;
  const int first = min(pages, split * per_split);
  return {ctx, first, min(pages, first + per_split)};
}

__device__ void produce(const MlaDecodeParams& p, const Maps& maps, Shared& sh, int b, int head0,
                        const Range& r) {
  device::mbarrier_arrive_expect(&sh.q_full, sizeof(sh.q));
  for (int j = 0; j < kBlocks; ++j)
    device::tma_load_2d(&sh.q[j][0][0], &maps.q, 64 * j, b * p.heads + head0, &sh.q_full);
  const std::int64_t* table = p.block_tables + b * p.table_stride;
  for (int page = r.first, i = 0; page < r.last; ++page, ++i) {
    const int s = i % kStages;
    device::mbarrier_wait(&sh.empty[s], (i / kStages & 1) ^ 1);  // round 0 passes at once
    device::mbarrier_arrive_expect(&sh.full[s], sizeof(sh.kv[s]));
    const int row = static_cast<int>(table[page] * kTokens);
    for (int j = 0; j < kBlocks; ++j)
      device::tma_load_2d(&sh.kv[s][j][0][0], &maps.cache, 64 * j, row, &sh.full[s]);
  }
}

// This thread's place: warpgroup, warp within it, lane; its fragment rows (heads) row and
// row + 8, and its first fragment column 2 (lane % 4).
struct Lane {
  int wg, tid, lane, row, col;
};

__device__ __forceinline__ Lane lane_of() {
  const int t = static_cast<int>(threadIdx.x);
  return {t / 128, t % 128, t % 32, 16 * (t % 128 / 32) + t % 32 / 4, 2 * (t % 4)};
}

// Running maximum (log2 units) and this thread's share of the sums of exponentials of its rows.
struct Softmax {
  float max[2] = {-INFINITY, -INFINITY}, sum[2] = {0.f, 0.f};
};

// s (64 heads x this warpgroup's 32 tokens) = Q K^T over all 576 dims.
__device__ void score(const Shared& sh, int stage, int wg, float (&s)[16]) {
  device::fence_registers(s);
  device::wgmma_fence();
#pragma unroll
  for (int j = 0; j < kBlocks; ++j) {
    const std::uint64_t a = device::smem_descriptor(&sh.q[j][0][0]);
    const std::uint64_t b = device::smem_descriptor(&sh.kv[stage][j][kHalfTokens * wg][0]);
#pragma unroll
    for (int k = 0; k < 4; ++k) device::wgmma_m64k16<32>(s, a + 2 * k, b + 2 * k, j > 0 || k > 0);
  }
  device::wgmma_commit();
  device::wgmma_wait<0>();
  device::fence_registers(s);
}

// Byte offset of (row, even column) in a 128-byte-swizzled 64 x 64 BF16 block.
__device__ __forceinline__ int swizzled(int row, int col) {
  return row * 128 + ((col / 8) ^ (row % 8)) * 16 + col % 8 * 2;
}

// The online softmax step of one page: masks and scales this warpgroup's scores, agrees on the
// new maxima with the other warpgroup (one named barrier), writes P = 2^(s - max) in BF16 into
// the P tile and returns the factors alpha by which the outputs shrink.
__device__ void softmax_tile(Shared& sh, const Lane& l, float (&s)[16], int valid, float scale,
                             Softmax& st, float (&alpha)[2]) {
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int token = kHalfTokens * l.wg + 8 * j + l.col + c;
        float& x = s[4 * j + 2 * h + c];
        x = token < valid ? x * scale : -INFINITY;
        tile_max[h] = fmaxf(tile_max[h], x);
      }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    for (int o = 1; o <= 2; o *= 2)
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], o));
    if (l.col == 0) sh.max[l.wg][l.row + 8 * h] = tile_max[h];
  }
  device::named_barrier_sync(kSyncId, kConsumers);
  float base[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float m = fmaxf(st.max[h], fmaxf(tile_max[h], sh.max[l.wg ^ 1][l.row + 8 * h]));
    base[h] = m == -INFINITY ? 0.f : m;
    alpha[h] = device::exp2_approx(st.max[h] - base[h]);
    st.max[h] = m;
    st.sum[h] *= alpha[h];
  }
  auto* p = reinterpret_cast<unsigned char*>(&sh.p[0][0]);
#pragma unroll
  for (int j = 0; j < 4; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float e0 = device::exp2_approx(s[4 * j + 2 * h] - base[h]);
      const float e1 = device::exp2_approx(s[4 * j + 2 * h + 1] - base[h]);
      st.sum[h] += e0 + e1;  // FP32 sums of the unrounded terms, as the reference's softmax
      const int row = l.row + 8 * h, col = kHalfTokens * l.wg + 8 * j + l.col;
      *reinterpret_cast<std::uint32_t*>(p + swizzled(row, col)) = device::pack_bf16x2(e0, e1);
    }
}

// Zeroes rows [valid, 64) of this warpgroup's value blocks of a page (whole 128-byte rows, so the
// swizzle does not matter).
__device__ void clear_values(Block (&kv)[kBlocks], const Lane& l, int valid) {
  const int chunks = (kTokens - valid) * 8;  // 16-byte chunks per block
  for (int i = l.tid; i < chunks * kValueBlocks; i += 128) {
    const int block = kValueBlocks * l.wg + i / chunks, at = i % chunks;
    *reinterpret_cast<uint4*>(&kv[block][valid + at / 8][at % 8 * 8]) = uint4{};
  }
}

// o (64 heads x this warpgroup's 256 dims) += P V over the page's 64 tokens.
__device__ void accumulate(const Shared& sh, int stage, int wg, float (&o)[128]) {
  device::fence_registers(o);
  device::wgmma_fence();
  const std::uint64_t a = device::smem_descriptor(&sh.p[0][0]);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const std::uint64_t b =
        device::smem_descriptor(&sh.kv[stage][kValueBlocks * wg][16 * k][0], sizeof(Block));
    device::wgmma_m64k16<256, true>(o, a + 2 * k, b, true);
  }
  device::wgmma_commit();
  device::wgmma_wait<0>();
  device::fence_registers(o);
}

// This range's result for this thread's two heads: BF16 output when the context is one range,
// else o / sum in FP32 and the log2-sum-exp (-inf for an empty range).
__device__ void write_result(const MlaDecodeParams& p, Shared& sh, const Lane& l, int b, int head0,
                             int split, Softmax& st, const float (&o)[128]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    for (int x = 1; x <= 2; x *= 2) st.sum[h] += __shfl_xor_sync(0xffffffffu, st.sum[h], x);
    if (l.col == 0) sh.sum[l.wg][l.row + 8 * h] = st.sum[h];
  }
  device::named_barrier_sync(kSyncId, kConsumers);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float total = st.sum[h] + sh.sum[l.wg ^ 1][l.row + 8 * h];
    const float inv = total > 0.f ? 1.f / total : 0.f;
    const std::int64_t row = std::int64_t{b} * p.heads + head0 + l.row + 8 * h;
    const int d0 = kHalfDims * l.wg + l.col;
    if (p.splits == 1) {
      auto* out = static_cast<__nv_bfloat16*>(p.out) + row * kMlaLatent + d0;
#pragma unroll
      for (int j = 0; j < kHalfDims / 8; ++j)
        *reinterpret_cast<std::uint32_t*>(out + 8 * j) =
            device::pack_bf16x2(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
      continue;
    }
    const std::int64_t at = row * p.splits + split;
    float* out = p.partial_out + at * kMlaLatent + d0;
#pragma unroll
    for (int j = 0; j < kHalfDims / 8; ++j)
      *reinterpret_cast<float2*>(out + 8 * j) =
          make_float2(o[4 * j + 2 * h] * inv, o[4 * j + 2 * h + 1] * inv);
    if (l.wg == 0 && l.col == 0)
      p.partial_lse[at] = total > 0.f ? st.max[h] + log2f(total) : -INFINITY;
  }
}

__device__ void consume(const MlaDecodeParams& p, Shared& sh, int b, int head0, int split,
                        const Range& r) {
  const Lane l = lane_of();
  const float scale = p.scale * kLog2e;
  float o[128] = {};
  Softmax st;
  device::mbarrier_wait(&sh.q_full, 0);
  for (int page = r.first, i = 0; page < r.last; ++page, ++i) {
    const int stage = i % kStages;
    device::mbarrier_wait(&sh.full[stage], i / kStages & 1);
    float s[16] = {};
    score(sh, stage, l.wg, s);
    const int valid =
        static_cast<int>(min(std::int64_t{kTokens}, r.ctx - std::int64_t{page} * kTokens));
    float alpha[2];
    softmax_tile(sh, l, s, valid, scale, st, alpha);  // both warpgroups are past their scores
    if (valid < kTokens) clear_values(sh.kv[stage], l, valid);
    if (alpha[0] != 1.f || alpha[1] != 1.f)
#pragma unroll
      for (int j = 0; j < kHalfDims / 8; ++j)
        o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0], o[4 * j + 2] *= alpha[1],
            o[4 * j + 3] *= alpha[1];
    device::fence_proxy_async();  // P and the cleared rows, before wgmma reads them
    device::named_barrier_sync(kSyncId, kConsumers);
    accumulate(sh, stage, l.wg, o);
    device::mbarrier_arrive(&sh.empty[stage]);
  }
  write_result(p, sh, l, b, head0, split, st, o);
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_wgmma_kernel(const __grid_constant__ Maps maps, MlaDecodeParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  // 1024-byte alignment of the shared-window offset (what TMA and the descriptors see)
  extern __shared__ unsigned char smem_raw[];
  const std::uint32_t pad = (1024 - device::shared_address(smem_raw) % 1024) % 1024;
  auto& sh = *reinterpret_cast<Shared*>(smem_raw + pad);
  const int head0 = blockIdx.x * kHeads, split = blockIdx.y, b = blockIdx.z;
  const Range r = range_of(p, split, b);
  if (threadIdx.x == 0) {
    device::mbarrier_init(&sh.q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      device::mbarrier_init(&sh.full[s], 1);
      device::mbarrier_init(&sh.empty[s], kConsumers);
    }
    device::fence_shared_for_async();
  }
  __syncthreads();
  if (threadIdx.x < kConsumers) {
    device::set_max_registers<kConsumerRegs, true>();
    consume(p, sh, b, head0, split, r);
    return;
  }
  device::set_max_registers<kProducerRegs, false>();
  if (threadIdx.x == kConsumers) {
    device::tma_prefetch(&maps.q);
    device::tma_prefetch(&maps.cache);
    produce(p, maps, sh, b, head0, r);
  }
#else
  (void)maps, (void)p;
  __trap();  // built for sm_90a only; the binding never launches it elsewhere
#endif
}

}  // namespace

int mla_decode_wgmma_default_splits(int batch, int heads, int multiprocessors) {
  const int ctas = batch * (heads / kHeads);
  return std::max(1, multiprocessors / std::max(ctas, 1));
}

int launch_mla_decode_wgmma(const MlaDecodeParams& p, std::int64_t cache_pages, void* stream) {
  Maps maps;
  if (!encode_tensor_map(maps.q, p.q, std::int64_t{p.batch} * p.heads, kMlaEntry, 64) ||
      !encode_tensor_map(maps.cache, p.cache, cache_pages * kTokens, kMlaEntry, 64))
    return static_cast<int>(cudaErrorInvalidValue);
  const cudaError_t rc = cudaFuncSetAttribute(mla_decode_wgmma_kernel,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  auto st = static_cast<cudaStream_t>(stream);
  const dim3 grid(p.heads / kHeads, p.splits, p.batch);
  mla_decode_wgmma_kernel<<<grid, kThreads, kSmem, st>>>(maps, p);
  const cudaError_t launched = cudaGetLastError();
  if (launched != cudaSuccess || p.splits == 1) return static_cast<int>(launched);
  return launch_mla_decode_combine(p, stream);
}

}  // namespace ponder::kernels
