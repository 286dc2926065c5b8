// MLA decode on Hopper (sm_90a) for many query heads (DeepSeek-V3's 128): one CTA per (64 heads,
// context range, sequence) reads each cache page once for its 64 heads. The queries stay in
// shared memory, pages stream in by TMA (128-byte swizzle) through an mbarrier ring fed by a
// producer thread, and two warpgroups run S = Q K^T and O += P V on wgmma, each the softmax of
// every other page while the other's tensor work runs; the output leaves by TMA as well.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/mla_decode_kernel.h"
#include "kernels/wgmma.cuh"

namespace ponder::kernels {
namespace {

// The consumers take the pages in pairs (A on stage 0, B on stage 1) and split the roles:
// warpgroup 0 computes the scores of A (m64n64k16 over the 576 dims) and their softmax, warpgroup 1
// those of B, so one warpgroup's softmax runs while the other's tensor work is in flight; warpgroup
// w owns output dims [256 w, 256 w + 256) (m64n256k16, V = the page's first 512 columns read
// MN-major: wgmma's transpose bit) and adds P V of both pages, its own page's P from registers
// (the scores' accumulator fragments packed to BF16), the other's from shared memory: each
// warpgroup also writes its P to the page's RoPE block, free once the scores are done. The maxima
// and rescale factors go through shared memory, ordered by named barriers; outputs are rescaled
// only where a maximum moved. Each 64 x 64 block has its own landed barrier and each
// warpgroup's value blocks their own release, so the next page starts loading before the whole
// stage is free. Warpgroup 2 issues the copies (one thread). Tiles are [9][64][64] blocks of
// 128-byte rows (one TMA box each); a page's rows past its context are cleared in the value
// blocks before P V (they may hold NaN and P is 0 there).
// FP8 pages (kFp8): the e4m3 bytes of each pair of value blocks (one scale group) land in the
// pair's first block as 64 rows of 128 bytes, the page's scales beside the tiles and the RoPE
// block as BF16 (no conversion); warps 1-3 of warpgroup 2 and the four warps of the consumer
// warpgroup that will score the page (just before it waits for them, while its last wgmma runs)
// convert each pair in place, each warp its own rows, to fp8 * scale in FP32 rounded to BF16 (the
// reference's dequantisation, exactly) and signal the blocks on their `ready` barriers, which the
// consumers wait on instead of `full`; its first thread issues the copies as the BF16 producer does
// (a waiting issuer in a converting warp would hold back the conversion, a polling one steals
// issue slots). Rows are split statically: warps claiming units of rows one at a time from a
// shared counter ran 16-45% slower (the claims' latency, bench/RESULTS.md).
constexpr int kHeads = 64, kTokens = kMlaPage, kBlocks = kMlaEntry / 64, kStages = 2;
constexpr int kConsumers = 256, kThreads = kConsumers + 128;

using Block = __nv_bfloat16[64][64];
static_assert(sizeof(Block) == 8192, "a block is one 64 x 64 BF16 TMA box");

// Release groups of a stage: the value blocks of warpgroup 0 and of warpgroup 1 (one arrival per
// thread of the warpgroup), and the P block (both warpgroups).
enum Group { kValues0, kValues1, kP, kGroups };

struct Shared {
  Block q[kBlocks];                      // the 64 heads' queries
  Block kv[kStages][kBlocks];            // pages of 64 tokens; block 8 holds P after the scores
  float max[kStages][kHeads];            // running maxima (log2 units) after the stage's page
  float factor[kStages][kHeads];         // by which the outputs shrink for the stage's page
  float sum[2][kHeads];                  // each warpgroup's sums of exponentials at the end
  std::uint64_t q_full;                  // the queries landed
  std::uint64_t full[kStages][kBlocks];  // a block landed (1 arrival + bytes)
  std::uint64_t empty[kStages][kGroups];
};

// With FP8 pages: the scales of each stage's page and the barriers of the blocks in BF16.
struct SharedFp8 : Shared {
  alignas(128) float scales[kStages][kTokens][kMlaLatent / kMlaFp8Group];  // (TMA destination)
  std::uint64_t ready[kStages][kBlocks];  // value blocks: 7 warps' arrivals; RoPE: its copy
};
template <bool kFp8>
using SharedOf = std::conditional_t<kFp8, SharedFp8, Shared>;
template <bool kFp8>  // + room to align to 1024
constexpr int kSmem = static_cast<int>(sizeof(SharedOf<kFp8>)) + 1024;
static_assert(kSmem<true> <= 227 * 1024, "fits an H100/H200 CTA's shared memory");

struct Maps {
  // [batch * heads, 576], [pages * 64, 576] and the output [batch * heads, 512], boxes of 64 x 64;
  // FP8 pages: cache = the [pages * 64, 512] e4m3 latent (boxes of 64 rows x 128 bytes,
  // unswizzled), the [.., 4] FP32 scales (boxes of 64 rows) and the [.., 64] BF16 RoPE dims (as
  // the BF16 blocks), rows 656 bytes apart
  CUtensorMap q, cache, out, scales, rope;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the device code: the sm_90a pass only

constexpr int kHalfDims = kMlaLatent / 2, kValueBlocks = kHalfDims / 64;
constexpr int kPBlock = kBlocks - 1;  // the RoPE block, which holds P once the scores are done
// Named barriers: A's maxima and factors published (with P of A), B's published (with P of B),
// each warpgroup's own P written (4 + w), the final sums exchanged.
constexpr int kReadyA = 1, kReadyB = 2, kOwnP = 4, kSums = 6;
// FP8 pages: a pair of value blocks (one scale group) converts in groups of 4 rows (one 16-byte
// read a lane), one group by each warp of the consumer warpgroup that scores the page, four by
// each converter warp (warps 1-3 of warpgroup 2).
constexpr int kRowGroups = kTokens / 4, kHelperGroups = 1, kConverterWarps = 3;
constexpr int kConverterGroups = (kRowGroups - 4 * kHelperGroups) / kConverterWarps;
static_assert(kConverterWarps * kConverterGroups + 4 * kHelperGroups == kRowGroups);
constexpr int kConvertingWarps = kConverterWarps + 4;
constexpr float kLog2e = 1.4426950408889634f;
// Registers per thread: consumers 232 (128 accumulators for P V, 32 for the scores), the
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

// Tokens of `page` inside the context.
__device__ __forceinline__ int valid_of(const Range& r, int page) {
  return static_cast<int>(min(std::int64_t{kTokens}, r.ctx - std::int64_t{page} * kTokens));
}

// The n-th block a stage's scores read: stage 1 starts with warpgroup 1's value blocks (the first
// it frees), stage 0 with warpgroup 0's; the P block comes last (freed last).
__device__ __forceinline__ int block_order(int stage, int n) {
  return n == kPBlock ? kPBlock : (n + kValueBlocks * stage) % (2 * kValueBlocks);
}

__device__ void load_queries(const MlaDecodeParams& p, const Maps& maps, Shared& sh, int b,
                             int head0) {
  device::mbarrier_arrive_expect(&sh.q_full, sizeof(sh.q));
  for (int j = 0; j < kBlocks; ++j)
    device::tma_load_2d(&sh.q[j][0][0], &maps.q, 64 * j, b * p.heads + head0, &sh.q_full);
}

// Issues the copy of the n-th block (block_order) of `stage`'s page (cache row `row`) on its
// `full` barrier; returns how many blocks it covered.
__device__ int copy_block(const Maps& maps, Shared& sh, int stage, int n, int row) {
  const int j = block_order(stage, n);
  device::mbarrier_arrive_expect(&sh.full[stage][j], sizeof(Block));
  device::tma_load_2d(&sh.kv[stage][j][0][0], &maps.cache, 64 * j, row, &sh.full[stage][j]);
  return 1;
}

// FP8 pages: a value block n starts a pair whose e4m3 bytes go into its block, 64 rows of 128
// bytes, on `full` (with the page's scales for the first pair); the RoPE block lands as BF16 on
// `ready`.
__device__ int copy_block(const Maps& maps, SharedFp8& sh, int stage, int n, int row) {
  const int j = block_order(stage, n);
  if (j == kPBlock) {
    device::mbarrier_arrive_expect(&sh.ready[stage][j], sizeof(Block));
    device::tma_load_2d(&sh.kv[stage][j][0][0], &maps.rope, 0, row, &sh.ready[stage][j]);
    return 1;
  }
  const bool first = n == 0;
  device::mbarrier_arrive_expect(&sh.full[stage][j],
                                 sizeof(Block) + (first ? sizeof(sh.scales[stage]) : 0));
  device::tma_load_2d(&sh.kv[stage][j][0][0], &maps.cache, 64 * j, row, &sh.full[stage][j]);
  if (first) device::tma_load_2d(&sh.scales[stage][0][0], &maps.scales, 0, row, &sh.full[stage][j]);
  return 2;
}

// The producer thread: the queries, then the range's pages block by block, each release group
// waited for before its first block.
template <class Sh>
__device__ void produce(const MlaDecodeParams& p, const Maps& maps, Sh& sh, int b, int head0,
                        const Range& r) {
  load_queries(p, maps, sh, b, head0);
  const std::int64_t* table = p.block_tables + b * p.table_stride;
  for (int page = r.first, i = 0; page < r.last; ++page, ++i) {
    const int s = i % kStages, row = static_cast<int>(table[page] * kTokens);
    for (int n = 0; n < kBlocks;) {
      if (n % kValueBlocks == 0 || n == kPBlock) {  // round 0 passes at once
        const int j = block_order(s, n), group = j == kPBlock ? kP : j / kValueBlocks;
        device::mbarrier_wait(&sh.empty[s][group], (i / kStages & 1) ^ 1);
      }
      n += copy_block(maps, sh, s, n, row);
    }
  }
}

// Byte offset of (row, even column) in a 128-byte-swizzled 64 x 64 BF16 block.
__device__ __forceinline__ int swizzled(int row, int col) {
  return row * 128 + ((col / 8) ^ (row % 8)) * 16 + col % 8 * 2;
}

// Four e4m3 values (one word, lowest byte first) times `scale` in FP32, rounded to BF16 pairs
// (e4m3 -> FP16 -> FP32 are exact).
__device__ __forceinline__ uint2 e4m3x4_scaled(std::uint32_t word, float scale) {
  std::uint32_t out[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(
        static_cast<__nv_fp8x2_storage_t>(word >> (16 * h)), __NV_E4M3)));
    const __nv_bfloat162 v = __floats2bfloat162_rn(f.x * scale, f.y * scale);
    out[h] = *reinterpret_cast<const std::uint32_t*>(&v);
  }
  return make_uint2(out[0], out[1]);
}

// Converts row groups [g0, g0 + kN) (rows 4 g to 4 g + 3) of value blocks j and j + 1 of
// `stage`'s page in place from their e4m3 rows in block j (row r: block j's 64 values, then block
// j + 1's) by one warp: a row is read by 8 lanes (16 values each) before they overwrite it with
// block j's half in BF16 (block j + 1's half goes to its own block), in the 128-byte-swizzled
// layout the descriptors read; the lanes of block j + 1's half take the neighbouring row (row ^ 1),
// so neither the reads nor the writes of a quarter warp meet in a bank.
template <int kN>
__device__ void convert_groups(SharedFp8& sh, int stage, int j, int g0, int lane) {
  const int half = lane % 8 / 4;
  const auto* raw = reinterpret_cast<const unsigned char*>(&sh.kv[stage][j][0][0]);
  auto* bytes = reinterpret_cast<unsigned char*>(&sh.kv[stage][j + half][0][0]);
  uint4 in[kN];
  float scale[kN];
  int row[kN];
#pragma unroll
  for (int x = 0; x < kN; ++x) {
    row[x] = 4 * (g0 + x) + (lane / 8 ^ half);
    in[x] = *reinterpret_cast<const uint4*>(raw + 128 * row[x] + 16 * (lane % 8));
    scale[x] = sh.scales[stage][row[x]][j / 2];
  }
  __syncwarp();
#pragma unroll
  for (int x = 0; x < kN; ++x) {
    const std::uint32_t words[4] = {in[x].x, in[x].y, in[x].z, in[x].w};
    std::uint32_t out[8];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const uint2 v = e4m3x4_scaled(words[w], scale[x]);
      out[2 * w] = v.x, out[2 * w + 1] = v.y;
    }
    const int col = 16 * (lane % 4);
    *reinterpret_cast<uint4*>(bytes + swizzled(row[x], col)) =
        make_uint4(out[0], out[1], out[2], out[3]);
    *reinterpret_cast<uint4*>(bytes + swizzled(row[x], col + 8)) =
        make_uint4(out[4], out[5], out[6], out[7]);
  }
}

// One warp's share of value blocks j and j + 1 of `stage`'s page in its `round`, kGroups row
// groups from g0 (two per shared-memory round trip), once their bytes landed; then made visible to
// the consumers' wgmma by the warp's arrival on both blocks' `ready` barriers.
template <int kGroups>
__device__ void convert_share(SharedFp8& sh, int stage, int j, int round, int g0, int lane) {
  device::mbarrier_wait(&sh.full[stage][j], round & 1);
#pragma unroll
  for (int g = 0; g + 1 < kGroups; g += 2) convert_groups<2>(sh, stage, j, g0 + g, lane);
  if constexpr (kGroups % 2 == 1) convert_groups<1>(sh, stage, j, g0 + kGroups - 1, lane);
  device::fence_proxy_async();
  __syncwarp();
  if (lane != 0) return;
  device::mbarrier_arrive(&sh.ready[stage][j]);
  device::mbarrier_arrive(&sh.ready[stage][j + 1]);
}

// Converter warp c of warpgroup 2 with FP8 pages: its row groups of the range's value blocks as
// they land (block_order, in pairs).
__device__ void convert(SharedFp8& sh, const Range& r, int c, int lane) {
  for (int page = r.first, i = 0; page < r.last; ++page, ++i) {
    const int s = i % kStages;
    for (int n = 0; n < 2 * kValueBlocks; n += 2)
      convert_share<kConverterGroups>(sh, s, block_order(s, n), i / 2, kConverterGroups * c, lane);
  }
}

// A consumer warp about to read blocks [kFrom, kTo) (block_order) of `stage`'s page in `round`:
// with FP8 pages it converts its row groups of their pairs first.
template <int kFrom, int kTo>
__device__ void help_convert(Shared&, int, int) {}
template <int kFrom, int kTo>
__device__ void help_convert(SharedFp8& sh, int stage, int round) {
  const int warp = static_cast<int>(threadIdx.x % 128 / 32),
            lane = static_cast<int>(threadIdx.x % 32);
  for (int n = kFrom; n < kTo && n < 2 * kValueBlocks; n += 2)
    convert_share<kHelperGroups>(sh, stage, block_order(stage, n), round,
                                 kConverterWarps * kConverterGroups + kHelperGroups * warp, lane);
}

// The barrier saying block j of `stage` holds its BF16 values.
__device__ __forceinline__ std::uint64_t* landed(Shared& sh, int stage, int j) {
  return &sh.full[stage][j];
}
__device__ __forceinline__ std::uint64_t* landed(SharedFp8& sh, int stage, int j) {
  return &sh.ready[stage][j];
}

// This thread's place: warpgroup, thread within it, lane; its fragment rows (heads) row and
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

// Issues s (+)= Q K^T over blocks [kFrom, kTo) (in block_order) of `stage`'s page in its `round`
// once they landed (FP8 pages: converted, helping), as one wgmma group. (Waiting between the
// wgmmas would make ptxas serialize them.)
template <int kFrom, int kTo, class Sh>
__device__ void issue_scores(Sh& sh, int stage, int round, float (&s)[32]) {
  help_convert<kFrom, kTo>(sh, stage, round);
#pragma unroll
  for (int n = kFrom; n < kTo; ++n)
    device::mbarrier_wait(landed(sh, stage, block_order(stage, n)), round & 1);
  device::fence_registers(s);
  device::wgmma_fence();
#pragma unroll
  for (int n = kFrom; n < kTo; ++n) {
    const int j = block_order(stage, n);
    const std::uint64_t a = device::smem_descriptor(&sh.q[j][0][0]);
    const std::uint64_t b = device::smem_descriptor(&sh.kv[stage][j][0][0]);
#pragma unroll
    for (int k = 0; k < 4; ++k) device::wgmma_m64k16<64>(s, a + 2 * k, b + 2 * k, n > 0 || k > 0);
  }
  device::wgmma_commit();
}

// All scores of `stage`'s page in its first round, waited for.
template <class Sh>
__device__ void scores(Sh& sh, int stage, float (&s)[32]) {
  issue_scores<0, kBlocks>(sh, stage, 0, s);
  device::wgmma_wait<0>();
  device::fence_registers(s);
}

// Issues o += P V for this warpgroup's 256 output dims over `stage`'s page (P in its block 8).
__device__ void issue_values(const Shared& sh, int stage, int wg, float (&o)[128]) {
  device::fence_registers(o);
  device::wgmma_fence();
  const std::uint64_t a = device::smem_descriptor(&sh.kv[stage][kPBlock][0][0]);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const std::uint64_t b =
        device::smem_descriptor(&sh.kv[stage][kValueBlocks * wg][16 * k][0], sizeof(Block));
    device::wgmma_m64k16<256, true>(o, a + 2 * k, b, true);
  }
  device::wgmma_commit();
}

// Masks (a partial page only) and scales the scores of a page with `valid` tokens in the context;
// returns each of this thread's rows' maximum (-inf with none valid).
__device__ void mask_and_max(const Lane& l, float (&s)[32], int valid, float scale, float (&m)[2]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] *= scale;
  if (valid < kTokens) {
#pragma unroll
    for (int i = 0; i < 32; ++i)
      if (8 * (i / 4) + l.col + i % 2 >= valid) s[i] = -INFINITY;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    m[h] = -INFINITY;
#pragma unroll
    for (int j = 0; j < 8; ++j) m[h] = fmaxf(m[h], fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
    for (int o = 1; o <= 2; o *= 2) m[h] = fmaxf(m[h], __shfl_xor_sync(0xffffffffu, m[h], o));
  }
}

// s = 2^(s - max) (0 at -inf, the maxima -inf meaning none yet), summed into st.sum in FP32 (the
// unrounded terms, as the reference's softmax).
__device__ void exponentiate(float (&s)[32], const float (&max)[2], Softmax& st) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const float base = max[h] == -INFINITY ? 0.f : max[h];
#pragma unroll
    for (int j = 0; j < 8; ++j)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        float& x = s[4 * j + 2 * h + c];
        x = device::exp2_approx(x - base);
        st.sum[h] += x;
      }
  }
}

// This thread's probabilities s as the BF16 A fragments of P V (wgmma's A from registers): a[k]
// holds tokens [16 k, 16 k + 16) as the pairs at (row, c), (row + 8, c), (row, c + 8) and
// (row + 8, c + 8), c = 16 k + its first column.
__device__ __forceinline__ void pack_p(const float (&s)[32], std::uint32_t (&a)[4][4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int i = 0; i < 4; ++i)
      a[k][i] = device::pack_bf16x2(s[8 * k + 2 * i], s[8 * k + 2 * i + 1]);
}

// Writes the packed probabilities a into the P block `p` (for the other warpgroup).
__device__ void store_packed_p(Block& p, const Lane& l, const std::uint32_t (&a)[4][4]) {
  auto* bytes = reinterpret_cast<unsigned char*>(&p[0][0]);
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      *reinterpret_cast<std::uint32_t*>(bytes + swizzled(l.row + 8 * h, 8 * j + l.col)) =
          a[j / 2][2 * (j % 2) + h];
}

// Keeps the registers of a, read by an asynchronous wgmma, alive until its wait.
__device__ __forceinline__ void fence_packed(std::uint32_t (&a)[4][4]) {
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[k][i])::"memory");
}

// Issues o += P V for this warpgroup's 256 output dims over `stage`'s page, P from registers.
__device__ void issue_values_rs(const Shared& sh, int stage, int wg, std::uint32_t (&a)[4][4],
                                float (&o)[128]) {
  fence_packed(a);
  device::fence_registers(o);
  device::wgmma_fence();
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const std::uint64_t b =
        device::smem_descriptor(&sh.kv[stage][kValueBlocks * wg][16 * k][0], sizeof(Block));
    device::wgmma_m64n256k16_rs(o, a[k], b);
  }
  device::wgmma_commit();
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

// Rows past the context of a partial page cleared in this warpgroup's value blocks, made visible
// to its next wgmma.
__device__ void clear_tail(Block (&kv)[kBlocks], const Lane& l, int valid) {
  if (valid == kTokens) return;
  clear_values(kv, l, valid);
  device::fence_proxy_async();
  device::named_barrier_sync(kOwnP + l.wg, 128);
}

// o *= f (per row); nothing to do where no maximum moved (f 1), as on most pages.
__device__ void scale_outputs(float (&o)[128], const float (&f)[2]) {
  if (f[0] == 1.f && f[1] == 1.f) return;
#pragma unroll
  for (int j = 0; j < kHalfDims / 8; ++j)
    o[4 * j] *= f[0], o[4 * j + 1] *= f[0], o[4 * j + 2] *= f[1], o[4 * j + 3] *= f[1];
}

// This warpgroup's factors and maxima of `stage`'s page, published by the other warpgroup.
__device__ void read_published(const Shared& sh, const Lane& l, int stage, float (&f)[2],
                               float (&m)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    f[h] = sh.factor[stage][l.row + 8 * h];
    m[h] = sh.max[stage][l.row + 8 * h];
  }
}

// The softmax step of a page of `valid` tokens whose scores s this warpgroup holds, from the
// running maxima `prev`: st.max becomes the new maxima, f the factor for the earlier outputs;
// both go to shared memory for the other warpgroup; s becomes the unnormalized probabilities.
__device__ void softmax_page(Shared& sh, const Lane& l, int stage, float (&s)[32], int valid,
                             float scale, const float (&prev)[2], Softmax& st, float (&f)[2]) {
  float m[2];
  mask_and_max(l, s, valid, scale, m);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    st.max[h] = fmaxf(prev[h], m[h]);
    f[h] = device::exp2_approx(prev[h] - (st.max[h] == -INFINITY ? 0.f : st.max[h]));
    st.sum[h] *= f[h];
    if (l.col == 0)
      sh.max[stage][l.row + 8 * h] = st.max[h], sh.factor[stage][l.row + 8 * h] = f[h];
  }
  exponentiate(s, st.max, st);
}

// Warpgroup 0's part of a pair (A = `page`, B = page + 1 when `has_b`), with the scores of A in s;
// ends with those of the next pair's A in s when there is one.
template <class Sh>
__device__ void pair_first(Sh& sh, const Lane& l, const Range& r, int page, int round, float scale,
                           float (&s)[32], float (&o)[128], Softmax& st) {
  const bool has_b = page + 1 < r.last, has_next = page + 2 < r.last;
  const int valid_a = valid_of(r, page);
  float f[2];
  const float prev[2] = {st.max[0], st.max[1]};
  softmax_page(sh, l, 0, s, valid_a, scale, prev, st, f);
  scale_outputs(o, f);
  std::uint32_t pa[4][4];
  pack_p(s, pa);
  clear_tail(sh.kv[0], l, valid_a);
  issue_values_rs(sh, 0, 0, pa, o);
  store_packed_p(sh.kv[0][kPBlock], l, pa);
  device::fence_proxy_async();
  device::named_barrier_arrive(kReadyA, kConsumers);
  device::wgmma_wait<0>();
  device::fence_registers(o);
  fence_packed(pa);
  device::mbarrier_arrive(&sh.empty[0][kValues0]);
  device::mbarrier_arrive(&sh.empty[0][kP]);
  device::named_barrier_sync(kReadyB, kConsumers);
  float g[2];
  read_published(sh, l, 1, g, st.max);
  scale_outputs(o, g);
  for (int h = 0; h < 2; ++h) st.sum[h] *= g[h];
  if (has_next) {  // then B is a whole page
    issue_values(sh, 1, 0, o);
    issue_scores<0, kValueBlocks>(sh, 0, round + 1, s);
    device::wgmma_wait<1>();
    device::fence_registers(o);
    device::mbarrier_arrive(&sh.empty[1][kValues0]);
    device::mbarrier_arrive(&sh.empty[1][kP]);
    issue_scores<kValueBlocks, kBlocks>(sh, 0, round + 1, s);
    device::wgmma_wait<0>();
    device::fence_registers(s);
  } else if (has_b) {
    clear_tail(sh.kv[1], l, valid_of(r, page + 1));
    issue_values(sh, 1, 0, o);
    device::wgmma_wait<0>();
    device::fence_registers(o);
    device::mbarrier_arrive(&sh.empty[1][kValues0]);
    device::mbarrier_arrive(&sh.empty[1][kP]);
  }
}

// Warpgroup 1's part of a pair (A = `page`, B = page + 1 when `has_b`), with the scores of B in s:
// A's P V (at A's maxima) runs behind B's softmax, so A's stage frees early; ends with the scores
// of the next pair's B in s when there is one.
template <class Sh>
__device__ void pair_second(Sh& sh, const Lane& l, const Range& r, int page, int round, float scale,
                            float (&s)[32], float (&o)[128], Softmax& st) {
  const bool has_b = page + 1 < r.last, has_next = page + 3 < r.last;
  const int valid_b = has_b ? valid_of(r, page + 1) : 0;
  device::named_barrier_sync(kReadyA, kConsumers);
  float f[2], prev[2], g[2];
  read_published(sh, l, 0, f, prev);
  for (int h = 0; h < 2; ++h) st.sum[h] *= f[h];
  scale_outputs(o, f);
  clear_tail(sh.kv[0], l, valid_of(r, page));
  issue_values(sh, 0, 1, o);
  softmax_page(sh, l, 1, s, valid_b, scale, prev, st, g);
  std::uint32_t pb[4][4];
  pack_p(s, pb);
  if (has_b) {
    store_packed_p(sh.kv[1][kPBlock], l, pb);
    if (valid_b < kTokens) clear_values(sh.kv[1], l, valid_b);
  }
  device::fence_proxy_async();
  device::named_barrier_arrive(kReadyB, kConsumers);
  device::wgmma_wait<0>();
  device::fence_registers(o);
  device::mbarrier_arrive(&sh.empty[0][kValues1]);
  device::mbarrier_arrive(&sh.empty[0][kP]);
  scale_outputs(o, g);
  if (has_b) {
    if (valid_b < kTokens) device::named_barrier_sync(kOwnP + 1, 128);
    issue_values_rs(sh, 1, 1, pb, o);
    device::wgmma_wait<0>();
    device::fence_registers(o);
    fence_packed(pb);
    device::mbarrier_arrive(&sh.empty[1][kValues1]);
    device::mbarrier_arrive(&sh.empty[1][kP]);
  }
  if (has_next) {  // the first half (its own value blocks, freed first) runs while the rest lands
    issue_scores<0, kValueBlocks>(sh, 1, round + 1, s);
    issue_scores<kValueBlocks, kBlocks>(sh, 1, round + 1, s);
    device::wgmma_wait<0>();
    device::fence_registers(s);
  }
}

// This warpgroup's BF16 outputs (o times inv per row) staged in the query tile, whose blocks 4 w to
// 4 w + 3 hold its 256 columns, then stored by the copy engine (whole 128-byte rows, coalesced).
__device__ void store_outputs(const Maps& maps, Shared& sh, const Lane& l, int row0,
                              const float (&o)[128], const float (&inv)[2]) {
#pragma unroll
  for (int j = 0; j < kHalfDims / 8; ++j) {
    auto* bytes = reinterpret_cast<unsigned char*>(&sh.q[kValueBlocks * l.wg + j / 8][0][0]);
#pragma unroll
    for (int h = 0; h < 2; ++h)
      *reinterpret_cast<std::uint32_t*>(bytes + swizzled(l.row + 8 * h, 8 * (j % 8) + l.col)) =
          device::pack_bf16x2(o[4 * j + 2 * h] * inv[h], o[4 * j + 2 * h + 1] * inv[h]);
  }
  device::fence_proxy_async();
  device::named_barrier_sync(kOwnP + l.wg, 128);
  if (l.tid != 0) return;
  for (int i = 0; i < kValueBlocks; ++i)
    device::tma_store_2d(&maps.out, &sh.q[kValueBlocks * l.wg + i][0][0], kHalfDims * l.wg + 64 * i,
                         row0);
  device::tma_store_wait();
}

// This range's result for this thread's two heads: BF16 output when the context is one range,
// else o / sum in FP32 and the log2-sum-exp (-inf for an empty range).
__device__ void write_result(const MlaDecodeParams& p, const Maps& maps, Shared& sh, const Lane& l,
                             int b, int head0, int split, Softmax& st, const float (&o)[128]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    for (int x = 1; x <= 2; x *= 2) st.sum[h] += __shfl_xor_sync(0xffffffffu, st.sum[h], x);
    if (l.col == 0) sh.sum[l.wg][l.row + 8 * h] = st.sum[h];
  }
  device::named_barrier_sync(kSums, kConsumers);  // also: both warpgroups' wgmmas are done
  float inv[2], total[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    total[h] = st.sum[h] + sh.sum[l.wg ^ 1][l.row + 8 * h];
    inv[h] = total[h] > 0.f ? 1.f / total[h] : 0.f;
  }
  if (p.splits == 1) {
    store_outputs(maps, sh, l, b * p.heads + head0, o, inv);
    return;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const std::int64_t row = std::int64_t{b} * p.heads + head0 + l.row + 8 * h;
    const int d0 = kHalfDims * l.wg + l.col;
    const std::int64_t at = row * p.splits + split;
    float* out = p.partial_out + at * kMlaLatent + d0;
#pragma unroll
    for (int j = 0; j < kHalfDims / 8; ++j)
      *reinterpret_cast<float2*>(out + 8 * j) =
          make_float2(o[4 * j + 2 * h] * inv[h], o[4 * j + 2 * h + 1] * inv[h]);
    if (l.wg == 0 && l.col == 0)
      p.partial_lse[at] = total[h] > 0.f ? st.max[h] + log2f(total[h]) : -INFINITY;
  }
}

template <class Sh>
__device__ void consume(const MlaDecodeParams& p, const Maps& maps, Sh& sh, int b, int head0,
                        int split, const Range& r) {
  const Lane l = lane_of();
  const float scale = p.scale * kLog2e;
  float o[128] = {}, s[32] = {};
  Softmax st;
  device::mbarrier_wait(&sh.q_full, 0);
  if (r.first + l.wg < r.last) scores(sh, l.wg, s);  // the first pair's A or B
  for (int page = r.first, round = 0; page < r.last; page += 2, ++round) {
    if (l.wg == 0)
      pair_first(sh, l, r, page, round, scale, s, o, st);
    else
      pair_second(sh, l, r, page, round, scale, s, o, st);
  }
  write_result(p, maps, sh, l, b, head0, split, st, o);
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <bool kFp8>
__global__ void __launch_bounds__(kThreads, 1)
    mla_decode_wgmma_kernel(const __grid_constant__ Maps maps, MlaDecodeParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  auto& sh = device::aligned_shared<SharedOf<kFp8>>(smem_raw);
  const int head0 = blockIdx.x * kHeads, split = blockIdx.y, b = blockIdx.z;
  const Range r = range_of(p, split, b);
  if (threadIdx.x == 0) {
    device::mbarrier_init(&sh.q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      for (int j = 0; j < kBlocks; ++j) device::mbarrier_init(&sh.full[s][j], 1);
      device::mbarrier_init(&sh.empty[s][kValues0], 128);
      device::mbarrier_init(&sh.empty[s][kValues1], 128);
      device::mbarrier_init(&sh.empty[s][kP], kConsumers);
      if constexpr (kFp8)
        for (int j = 0; j < kBlocks; ++j)
          device::mbarrier_init(&sh.ready[s][j], j == kPBlock ? 1 : kConvertingWarps);
    }
    device::fence_shared_for_async();
  }
  __syncthreads();
  if (threadIdx.x < kConsumers) {
    device::set_max_registers<kConsumerRegs, true>();
    consume(p, maps, sh, b, head0, split, r);
    return;
  }
  device::set_max_registers<kProducerRegs, false>();
  if (threadIdx.x == kConsumers) {
    device::tma_prefetch(&maps.q);
    device::tma_prefetch(&maps.cache);
    device::tma_prefetch(&maps.out);
    if constexpr (kFp8) {
      device::tma_prefetch(&maps.scales);
      device::tma_prefetch(&maps.rope);
    }
    produce(p, maps, sh, b, head0, r);
  }
  const int converter = static_cast<int>(threadIdx.x - kConsumers) / 32 - 1;
  if constexpr (kFp8)
    if (converter >= 0) convert(sh, r, converter, static_cast<int>(threadIdx.x % 32));
#else
  (void)maps, (void)p;
  __trap();  // built for sm_90a only; the binding never launches it elsewhere
#endif
}

// The tensor maps of the cache: BF16 entries, or FP8 rows' latent bytes, scales and RoPE dims.
bool encode_cache_maps(Maps& maps, const MlaDecodeParams& p, std::int64_t rows) {
  if (!p.cache_fp8) return encode_tensor_map(maps.cache, p.cache, rows, kMlaEntry, 64);
  const auto* bytes = static_cast<const unsigned char*>(p.cache);
  constexpr int kScales = kMlaLatent / kMlaFp8Group;
  return encode_tensor_map(maps.cache, bytes,
                           {CU_TENSOR_MAP_DATA_TYPE_UINT8, rows, kMlaLatent, kMlaFp8Entry, 128,
                            kTokens, CU_TENSOR_MAP_SWIZZLE_NONE}) &&
         encode_tensor_map(maps.scales, bytes + kMlaLatent,
                           {CU_TENSOR_MAP_DATA_TYPE_FLOAT32, rows, kScales, kMlaFp8Entry, kScales,
                            kTokens, CU_TENSOR_MAP_SWIZZLE_NONE}) &&
         encode_tensor_map(maps.rope, bytes + kMlaLatent + 4 * kScales,
                           {CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rows, kMlaRope, kMlaFp8Entry, 64,
                            kTokens, CU_TENSOR_MAP_SWIZZLE_128B});
}

template <bool kFp8>
int launch(const Maps& maps, const MlaDecodeParams& p, cudaStream_t stream) {
  constexpr int smem = kSmem<kFp8>;
  const cudaError_t rc = cudaFuncSetAttribute(mla_decode_wgmma_kernel<kFp8>,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  const dim3 grid(p.heads / kHeads, p.splits, p.batch);
  mla_decode_wgmma_kernel<kFp8><<<grid, kThreads, smem, stream>>>(maps, p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int mla_decode_wgmma_default_splits(int batch, int heads, int multiprocessors) {
  const int ctas = batch * (heads / kHeads);
  return std::max(1, multiprocessors / std::max(ctas, 1));
}

int launch_mla_decode_wgmma(const MlaDecodeParams& p, std::int64_t cache_pages, void* stream) {
  Maps maps{};
  if (!encode_tensor_map(maps.q, p.q, std::int64_t{p.batch} * p.heads, kMlaEntry, 64) ||
      !encode_cache_maps(maps, p, cache_pages * kTokens) ||
      !encode_tensor_map(maps.out, p.out, std::int64_t{p.batch} * p.heads, kMlaLatent, 64))
    return static_cast<int>(cudaErrorInvalidValue);
  auto st = static_cast<cudaStream_t>(stream);
  const int rc = p.cache_fp8 ? launch<true>(maps, p, st) : launch<false>(maps, p, st);
  if (rc != 0 || p.splits == 1) return rc;
  return launch_mla_decode_combine(p, stream);
}

}  // namespace ponder::kernels
