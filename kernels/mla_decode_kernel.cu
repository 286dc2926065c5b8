#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/mla_decode_kernel.h"
#include "kernels/mma.cuh"
#include "kernels/wgmma.cuh"

namespace ponder::kernels {
namespace {

using device::cp_async16;
using device::exp2_approx;
using device::ldmatrix_x4;
using device::ldmatrix_x4_trans;
using device::mma;
using device::pack_bf16x2;

// One CTA: 8 warps, 16 heads of one sequence, one range of that sequence's context; two CTAs
// per SM. The range streams through shared memory in tiles of 32 tokens (half a page), two
// stages, each tile landed by the copy engine as nine boxes of 32 rows x 64 dims of a tensor map
// over the cache (128-byte swizzled, see Tile; warp w's lane 0 issues box w, warp 0 also box 8;
// they complete on the stage's mbarrier). Warp w scores tokens [8 (w % 4), +8) of the tile over
// entry dims [288 (w / 4), +288) (mma.sync m16n8k16, ldmatrix fragments); after one barrier every
// warp adds the two halves of all the scores, runs the same online softmax (no cross-warp
// reduction) and accumulates output dims [64w, 64w + 64) of P @ latent with the probabilities in
// registers. Each warp's instructions per tile are the critical path: eight warps keep them few.
// Measured on an H200 against 64 heads per CTA and four stages at one CTA per SM: both slower. With
// up to kMlaClusterSplits ranges, where the device holds all the clusters at once, the ranges of a
// (sequence, 16 heads) form one thread-block cluster: each keeps its FP32 result in shared memory
// and every CTA combines a slice of the outputs from all of them (distributed shared memory), so
// no partial result goes through global memory. Otherwise the ranges write FP32 results; with up
// to kMlaFusedSplits ranges, the last CTA of the (sequence, 16 heads) to finish (an atomic count
// that wraps back to zero) combines them, else a combine kernel does. Launched as a programmatic
// dependent (PDL): its CTAs take SM slots as the previous kernel's retire and wait for that
// kernel's results before their first global read; it lets the next kernel launch once all its CTAs
// have left their loops. An FP8 cache (kFp8, rows of kMlaFp8Entry bytes) lands each tile as one
// bulk copy (its rows are contiguous in a page) in two raw stages. The scoring warps read the e4m3
// bytes as their B fragments, convert them exactly to BF16 in registers (every e4m3 value is a
// BF16 value) and store the converted latent into one BF16 value tile for P @ latent; each
// 128-value group's scale multiplies that group's products per token after the MMAs, and the
// probabilities are multiplied by their token's scale (of the warp's output group) before they are
// rounded to BF16. So the scores use the dequantised entries before their BF16 rounding (the
// reference rounds them: a difference of at most 2^-9 relative per entry), P @ latent rounds P
// times the scale instead of P, and no pass over the tile and no barrier is added to the loop.
constexpr int kTile = 32, kHeads = 16, kWarps = 8, kThreads = 32 * kWarps, kStages = 2;
constexpr int kHalf = kMlaEntry / 2;  // entry dims scored per warp
constexpr int kRow = kMlaEntry + 8;   // padded query rows: conflict-free ldmatrix
constexpr int kBlock = 64, kBlocks = kMlaEntry / kBlock;  // a BF16 tile's boxes of 64 dims
constexpr int kLine = 2 * kBlock, kBlockBytes = kTile * kLine;
constexpr int kScoreRow = kTile + 8;        // conflict-free float2 score accesses
constexpr int kDims = kMlaLatent / kWarps;  // output dims per warp
constexpr int kChunks = kMlaEntry / 8;      // 16-byte chunks per entry
constexpr int kEntryBytes = kMlaEntry * 2;
constexpr float kLog2e = 1.4426950408889634f;

// A BF16 tile: dims [64 j, 64 j + 64) of row r at [j][r], each 128-byte line with its 16-byte
// chunk c at c ^ (r % 8) (TMA's 128-byte swizzle, the tile 1024-byte aligned), so the eight rows
// of an ldmatrix matrix, one chunk column, fall in eight different bank groups.
using Tile = __nv_bfloat16[kBlocks][kTile][kBlock];
using Scores = float[2][kHeads][kScoreRow];  // the two halves of the dims
using RawTile = std::uint8_t[kTile][kMlaFp8Entry];
// The converted latent of an FP8 tile (rows padded for conflict-free ldmatrix).
using ValueTile = __nv_bfloat16[kTile][kMlaLatent + 8];
constexpr int kScaleOffset = kMlaLatent;                  // a row's FP32 scales (bytes)
constexpr int kRopeOffset = kMlaFp8Entry - 2 * kMlaRope;  // a row's BF16 RoPE dims (bytes)

// Where the copies land: BF16 tiles read in place, or FP8 tiles (contiguous rows) whose latent
// the scoring warps convert into one value tile.
template <bool kFp8>
struct Stages {
  alignas(1024) Tile kv[kStages];
  // The bytes a tile's copies bring: whole boxes (rows past `valid` are cleared after landing).
  static __device__ std::uint32_t bytes(int) { return kTile * kEntryBytes; }
};
template <>
struct Stages<true> {
  RawTile raw[kStages];
  ValueTile values;
  static __device__ std::uint32_t bytes(int valid) { return valid * kMlaFp8Entry; }
};
static_assert(kMlaFp8Entry % 16 == 0, "bulk copies move multiples of 16 bytes");

// The query: BF16 rows (ldmatrix fragments) or, for FP8 tiles, the A fragments of the scoring
// MMAs in lane order, [32-dim step][MMA][lane] (see score_tile_fp8): one 16-byte load each.
using QueryFragments = uint4[kMlaEntry / 32][2][32];
template <bool kFp8>
struct QueryTile {
  using Type = __nv_bfloat16[kHeads][kRow];
};
template <>
struct QueryTile<true> {
  using Type = QueryFragments;
};

// A range's result kept in shared memory for its cluster's combine: o / sum per head (rows
// padded against bank conflicts) and the log2-sum-exp.
struct Partial {
  float o[kHeads][kMlaLatent + 4];
  float lse[kHeads];
};

template <bool kFp8>
struct Smem {
  union {
    Stages<kFp8> stages;
    Partial partial;  // after the last tile
  };
  typename QueryTile<kFp8>::Type q;
  Scores score;
  std::uint64_t full[kStages];  // mbarriers: the stage's tile landed
  int combines;                 // this CTA is the last of its sequence's ranges to finish
};

// Dynamic shared memory of the kernel: BF16 tiles with room to align them to 1024 bytes.
template <bool kFp8>
constexpr int kSmemBytes = sizeof(Smem<kFp8>) + (kFp8 ? 0 : 1024);

template <bool kFp8>
__device__ __forceinline__ Smem<kFp8>& smem_of(unsigned char* smem_raw) {
  if constexpr (kFp8)
    return *reinterpret_cast<Smem<kFp8>*>(smem_raw);
  else
    return device::aligned_shared<Smem<kFp8>>(smem_raw);
}

// This thread's place: warp, lane, and its mma fragment row g / column t.
struct Lane {
  int warp, lane, g, t;
};

__device__ __forceinline__ Lane lane_of() {
  const int tid = static_cast<int>(threadIdx.x);
  return {tid / 32, tid % 32, tid % 32 / 4, tid % 4};
}

// Output fragments of heads (g, g + 8) x this warp's 64 dims, those heads' running max (log2
// units) and this thread's share of their sums of exponentials.
struct Acc {
  float o[kDims / 8][4] = {};
  float max[2] = {-INFINITY, -INFINITY}, sum[2] = {0.f, 0.f};
};

__device__ __forceinline__ int valid_tokens(std::int64_t ctx, int tile) {
  return static_cast<int>(min(std::int64_t{kTile}, ctx - std::int64_t{tile} * kTile));
}

// Zeroes rows [valid, kTile) of an FP8 stage before a context's last, partial tile is copied
// into it: those rows are never copied, and NaN left there would reach the output as P = 0 times
// a value. Called by every thread after a block barrier; later barriers order it before the reads.
__device__ void clear_rows(RawTile& tile, int valid) {
  auto* words = reinterpret_cast<uint4*>(&tile[valid][0]);
  const int count = (kTile - valid) * (kMlaFp8Entry / 16);
  for (int i = threadIdx.x; i < count; i += kThreads) words[i] = uint4{};
}

// The same for a landed BF16 tile (its boxes bring every row of the half page): rows [valid,
// kTile) of each box, whole 128-byte lines. Called by every thread after the stage's mbarrier
// completed, before the block barrier that precedes the reads.
__device__ void clear_rows(Tile& tile, int valid) {
  constexpr int kWords = kLine / 16;
  const int per_box = (kTile - valid) * kWords;
  for (int i = threadIdx.x; i < kBlocks * per_box; i += kThreads)
    reinterpret_cast<uint4*>(&tile[i / per_box][valid][0])[i % per_box] = uint4{};
}

// Called by every warp: lane 0 copies its boxes of tokens [32 * half, +32) of a page into stage
// `stage`, counted on `full` (armed beforehand by the kernel's `arm`, ordered before this by a
// block barrier).
__device__ void copy_tile(Stages<false>& stages, int stage, std::uint64_t& full,
                          const CUtensorMap& map, const void*, std::int64_t page, int half, int) {
  if (threadIdx.x % 32 != 0) return;
  const int row = static_cast<int>(page * kMlaPage) + half * kTile;
  for (int j = static_cast<int>(threadIdx.x) / 32; j < kBlocks; j += kWarps)
    device::tma_load_2d(&stages.kv[stage][j][0][0], &map, kBlock * j, row, &full);
}

// The same for FP8 rows: thread 0 copies the tile's `valid` rows, contiguous in the page, at once.
__device__ void copy_tile(Stages<true>& stages, int stage, std::uint64_t& full, const CUtensorMap&,
                          const void* cache, std::int64_t page, int half, int valid) {
  if (threadIdx.x == 0)
    device::bulk_copy(&stages.raw[stage][0][0],
                      static_cast<const std::uint8_t*>(cache) +
                          (page * kMlaPage + half * kTile) * std::int64_t{kMlaFp8Entry},
                      valid * kMlaFp8Entry, &full);
}

// Four e4m3 values (one word, lowest byte first) as two BF16 pairs, exactly: each byte with its
// sign byte replicated above it (prmt), shifted to BF16's places (sign, exponent field 0-15,
// mantissa: the value times 2^-120, subnormals included), then times 2^120 (exact; BF16
// arithmetic keeps subnormals). NaN bytes (never written by mla_cache_quantize from finite
// entries) come out finite.
__device__ __forceinline__ uint2 e4m3x4_to_bf16(std::uint32_t word) {
  std::uint32_t pair[2];
  asm("prmt.b32 %0, %1, 0, 0x9180;" : "=r"(pair[0]) : "r"(word));
  asm("prmt.b32 %0, %1, 0, 0xB3A2;" : "=r"(pair[1]) : "r"(word));
  const __nv_bfloat162 two120 =
      __halves2bfloat162(__ushort_as_bfloat16(0x7B80), __ushort_as_bfloat16(0x7B80));
#pragma unroll
  for (auto& bits : pair) {
    bits = (bits << 4) & 0x87F087F0u;
    const __nv_bfloat162 v = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&bits), two120);
    bits = *reinterpret_cast<const std::uint32_t*>(&v);
  }
  return make_uint2(pair[0], pair[1]);
}

__device__ void load_query(__nv_bfloat16 (*q)[kRow], const MlaDecodeParams& p, int b, int head0) {
  const auto* src =
      static_cast<const __nv_bfloat16*>(p.q) + (std::int64_t{b} * p.heads + head0) * kMlaEntry;
  for (int c = threadIdx.x; c < kHeads * kChunks; c += kThreads) {
    const int h = c / kChunks, col = c % kChunks * 8;
    cp_async16(&q[h][col], src + h * kMlaEntry + col, 16);
  }
}

// The FP8 path's query fragments: dims [8c, 8c + 8) of head h = g + 8 hi (step c / 4, t = c % 4)
// are the pairs of lane 4g + t at registers hi and hi + 2 of MMA 0 (dims 8t to 8t + 3 of the
// step) and MMA 1 (the next four).
__device__ void load_query(QueryFragments& q, const MlaDecodeParams& p, int b, int head0) {
  const auto* src =
      static_cast<const __nv_bfloat16*>(p.q) + (std::int64_t{b} * p.heads + head0) * kMlaEntry;
  for (int c = threadIdx.x; c < kHeads * kChunks; c += kThreads) {
    const int h = c / kChunks, chunk = c % kChunks, lane = 4 * (h % 8) + chunk % 4, hi = h / 8;
    const uint4 v = *reinterpret_cast<const uint4*>(src + h * kMlaEntry + 8 * chunk);
    auto* mma0 = reinterpret_cast<std::uint32_t*>(&q[chunk / 4][0][lane]);
    auto* mma1 = reinterpret_cast<std::uint32_t*>(&q[chunk / 4][1][lane]);
    mma0[hi] = v.x, mma0[hi + 2] = v.y, mma1[hi] = v.z, mma1[hi + 2] = v.w;
  }
}

// Partial scores (scale * q . entry over dims half kPart, the warps w with w / 4 == kPart; log2
// units; -inf past `valid`) of the 16 heads and this warp's 8 tokens into score[kPart]. Lane l
// reads chunk l / 8 of each 32 dims of token l % 8: dims d start a chunk (c0 + l / 8) of box d /
// 64, c0 = d % 64 / 8 being 0 or 4, so its swizzled place is the lane's place for c0 = 0 with bit 6
// flipped when c0 = 4.
template <int kPart>
__device__ void score_tile(const Tile& kv, const __nv_bfloat16 (*q)[kRow], Scores& scores,
                           const Lane& l, int valid, float scale) {
  float acc[2][4] = {};
  const int token0 = 8 * (l.warp % 4);
  const std::uint32_t key =
      device::shared_address(&kv[0][token0 + l.lane % 8][0]) + 16 * ((l.lane / 8) ^ (l.lane % 8));
  const __nv_bfloat16* query = &q[l.lane % 16][kHalf * kPart + l.lane / 16 * 8];
#pragma unroll
  for (int k = 0; k < kHalf; k += 32) {
    const int dim = kHalf * kPart + k;
    std::uint32_t b[4], a0[4], a1[4];
    ldmatrix_x4(b, (dim % kBlock == 0 ? key : key ^ 64) + dim / kBlock * kBlockBytes);
    ldmatrix_x4(a0, query + k);
    ldmatrix_x4(a1, query + k + 16);
    mma(acc[0], a0, b[0], b[1]);
    mma(acc[1], a1, b[2], b[3]);
  }
  const int token = token0 + 2 * l.t;
  auto& score = scores[kPart];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float s0 = token < valid ? (acc[0][2 * r] + acc[1][2 * r]) * scale : -INFINITY;
    const float s1 =
        token + 1 < valid ? (acc[0][2 * r + 1] + acc[1][2 * r + 1]) * scale : -INFINITY;
    *reinterpret_cast<float2*>(&score[l.g + 8 * r][token]) = make_float2(s0, s1);
  }
}

// score_tile over an FP8 tile, for the warps of dims part kPart: thread (g, t) takes dims
// [k + 8t, +8) of each 32 as its B fragments of two MMAs (token g's e4m3 bytes converted, or its
// BF16 RoPE dims) and the same dims of heads g, g + 8 as their A fragments (load_query; any order
// of the summed dims gives the dot product); it stores the converted latent into `values`. Each
// 128-dim group's two accumulators are scaled by their tokens' scales and summed when the group
// ends.
template <int kPart>
__device__ void score_tile_fp8(const RawTile& raw, ValueTile& values, const QueryFragments& q,
                               Scores& scores, const Lane& l, int valid, float scale) {
  constexpr int kBegin = kHalf * kPart, kEnd = kBegin + kHalf;
  const int token0 = 8 * (l.warp % 4), token = token0 + 2 * l.t;
  const std::uint8_t* key = raw[token0 + l.g];
  float total[4] = {}, acc[2][4] = {};
#pragma unroll
  for (int k = kBegin; k < kEnd; k += 32) {
    std::uint32_t b[4];
    if (k < kMlaLatent) {
      const uint2 bytes = *reinterpret_cast<const uint2*>(key + k + 8 * l.t);
      const uint2 lo = e4m3x4_to_bf16(bytes.x), hi = e4m3x4_to_bf16(bytes.y);
      b[0] = lo.x, b[1] = lo.y, b[2] = hi.x, b[3] = hi.y;
      *reinterpret_cast<uint4*>(&values[token0 + l.g][k + 8 * l.t]) =
          make_uint4(b[0], b[1], b[2], b[3]);
    } else {
      const uint4 rope =
          *reinterpret_cast<const uint4*>(key + kRopeOffset + 2 * (k - kMlaLatent) + 16 * l.t);
      b[0] = rope.x, b[1] = rope.y, b[2] = rope.z, b[3] = rope.w;
    }
    const uint4 q0 = q[k / 32][0][l.lane], q1 = q[k / 32][1][l.lane];
    const std::uint32_t a0[4] = {q0.x, q0.y, q0.z, q0.w}, a1[4] = {q1.x, q1.y, q1.z, q1.w};
    mma(acc[0], a0, b[0], b[1]);
    mma(acc[1], a1, b[2], b[3]);
    if ((k + 32) % kMlaFp8Group != 0 && k + 32 != kEnd) continue;
    const int at = kScaleOffset + 4 * (k / kMlaFp8Group);  // the group's scale (RoPE: none)
    const float s0 = k < kMlaLatent ? *reinterpret_cast<const float*>(&raw[token][at]) : 1.f;
    const float s1 = k < kMlaLatent ? *reinterpret_cast<const float*>(&raw[token + 1][at]) : 1.f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      total[i] += (acc[0][i] + acc[1][i]) * (i % 2 == 0 ? s0 : s1);
      acc[0][i] = acc[1][i] = 0.f;
    }
  }
  auto& score = scores[kPart];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float s0 = token < valid ? total[2 * r] * scale : -INFINITY;
    const float s1 = token + 1 < valid ? total[2 * r + 1] * scale : -INFINITY;
    *reinterpret_cast<float2*>(&score[l.g + 8 * r][token]) = make_float2(s0, s1);
  }
}

// The scales of this thread's probability columns (tokens 16 kk + 2t + {0, 1, 8, 9}) for the
// group of this warp's output dims; 0 past the tile's valid rows (zeroed).
__device__ void value_scales(const RawTile& raw, const Lane& l, float (&out)[2][4]) {
  const int at = kScaleOffset + 4 * (kDims * l.warp / kMlaFp8Group);
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      out[kk][j] =
          *reinterpret_cast<const float*>(&raw[16 * kk + 2 * l.t + j % 2 + 8 * (j / 2)][at]);
}

// The online softmax step of one tile from all its scores: new maxima, the output rescaled,
// the sums updated, and P = 2^(score - max) in BF16 as the A fragments `pa` of P @ latent (FP8:
// times the value scales of its columns, after the sums).
template <bool kFp8>
__device__ void softmax_tile(const Scores& score, const Lane& l, Acc& acc,
                             std::uint32_t (&pa)[2][4], const float (&value_scale)[2][4]) {
  float v[2][2][4];  // [16-token step][head g or g + 8][columns 2t, 2t + 1, 2t + 8, 2t + 9]
  float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int col = 16 * kk + 2 * l.t;
      const float* a = &score[0][l.g + 8 * r][col];
      const float* b = &score[1][l.g + 8 * r][col];
      const float2 lo_a = *reinterpret_cast<const float2*>(a);
      const float2 hi_a = *reinterpret_cast<const float2*>(a + 8);
      const float2 lo_b = *reinterpret_cast<const float2*>(b);
      const float2 hi_b = *reinterpret_cast<const float2*>(b + 8);
      v[kk][r][0] = lo_a.x + lo_b.x, v[kk][r][1] = lo_a.y + lo_b.y;
      v[kk][r][2] = hi_a.x + hi_b.x, v[kk][r][3] = hi_a.y + hi_b.y;
#pragma unroll
      for (int j = 0; j < 4; ++j) tile_max[r] = fmaxf(tile_max[r], v[kk][r][j]);
    }
  float base[2], alpha[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    for (int o = 1; o <= 2; o *= 2)
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], o));
    const float m = fmaxf(acc.max[r], tile_max[r]);
    base[r] = m == -INFINITY ? 0.f : m;
    alpha[r] = exp2_approx(acc.max[r] - base[r]);
    acc.max[r] = m;
    acc.sum[r] *= alpha[r];
  }
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float e[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        e[j] = exp2_approx(v[kk][r][j] - base[r]);
        acc.sum[r] += e[j];  // FP32 sums of the unrounded terms, as the reference's softmax
      }
      if constexpr (kFp8)
#pragma unroll
        for (int j = 0; j < 4; ++j) e[j] *= value_scale[kk][j];
      pa[kk][r] = pack_bf16x2(e[0], e[1]);
      pa[kk][r + 2] = pack_bf16x2(e[2], e[3]);
    }
  if (__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) return;
#pragma unroll
  for (int nt = 0; nt < kDims / 8; ++nt)
    acc.o[nt][0] *= alpha[0], acc.o[nt][1] *= alpha[0], acc.o[nt][2] *= alpha[1],
        acc.o[nt][3] *= alpha[1];
}

// acc.o += P (16 heads x 32 tokens) @ latent (32 tokens x this warp's 64 dims): the B fragments
// of tokens [16 kk, +16) x dims [16 np, +16) of the warp's dims come from ldmatrix.trans at
// shared address value(kk, np) (lane l: token l % 8 + 8 (l / 8 % 2), dims + 8 (l / 16)).
template <typename Address>
__device__ void accumulate_tile(const Address& value, const std::uint32_t (&pa)[2][4], Acc& acc) {
#pragma unroll
  for (int kk = 0; kk < 2; ++kk)
#pragma unroll
    for (int np = 0; np < kDims / 16; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, value(kk, np));
      mma(acc.o[2 * np], pa[kk], b[0], b[1]);
      mma(acc.o[2 * np + 1], pa[kk], b[2], b[3]);
    }
}

// The FP8 path's value tile (padded rows).
__device__ void accumulate_tile(const ValueTile& values, const Lane& l,
                                const std::uint32_t (&pa)[2][4], Acc& acc) {
  constexpr int kLen = kMlaLatent + 8;
  const std::uint32_t value = device::shared_address(
      &values[l.lane % 8 + 8 * (l.lane / 8 % 2)][kDims * l.warp + 8 * (l.lane / 16)]);
  accumulate_tile([&](int kk, int np) { return value + 2 * (16 * kk * kLen + 16 * np); }, pa, acc);
}

// A BF16 tile: the warp's dims are box w, the lane's chunk of dims [16 np, +16) is 2 np + l / 16,
// swizzled by its token's row: (2 np) ^ (l / 16 ^ l % 8), i.e. the np = 0 place with bits 5-6
// flipped by np.
__device__ void accumulate_tile(const Tile& kv, const Lane& l, const std::uint32_t (&pa)[2][4],
                                Acc& acc) {
  const std::uint32_t value =
      device::shared_address(&kv[l.warp][l.lane % 8 + 8 * (l.lane / 8 % 2)][0]) +
      16 * ((l.lane / 16) ^ (l.lane % 8));
  accumulate_tile([&](int kk, int np) { return (value ^ (32 * np)) + 16 * kk * kLine; }, pa, acc);
}

// One landed tile's scores, softmax step and P @ latent (stage `stage`, `valid` tokens); its block
// barrier publishes the scores (and an FP8 tile's value tile).
template <bool kFp8>
__device__ void tile_math(Smem<kFp8>& s, int stage, const Lane& l, int valid, float scale,
                          Acc& acc) {
  std::uint32_t pa[2][4];
  if constexpr (kFp8) {
    const RawTile& raw = s.stages.raw[stage];
    if (l.warp < kWarps / 2)
      score_tile_fp8<0>(raw, s.stages.values, s.q, s.score, l, valid, scale);
    else
      score_tile_fp8<1>(raw, s.stages.values, s.q, s.score, l, valid, scale);
    float value_scale[2][4];
    value_scales(raw, l, value_scale);
    __syncthreads();
    softmax_tile<true>(s.score, l, acc, pa, value_scale);
    accumulate_tile(s.stages.values, l, pa, acc);
  } else {
    const Tile& kv = s.stages.kv[stage];
    if (l.warp < kWarps / 2)
      score_tile<0>(kv, s.q, s.score, l, valid, scale);
    else
      score_tile<1>(kv, s.q, s.score, l, valid, scale);
    __syncthreads();
    softmax_tile<false>(s.score, l, acc, pa, {});
    accumulate_tile(kv, l, pa, acc);
  }
}

// This range's result for heads (head + g, head + g + 8): the output itself in BF16 when the
// context is one range, else o / sum in FP32 and the log2-sum-exp (-inf for an empty range), into
// `partial` (shared memory) for a cluster's combine or to global memory.
__device__ void write_result(const MlaDecodeParams& p, int b, int head, int split, const Lane& l,
                             Acc& acc, Partial* partial) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    for (int o = 1; o <= 2; o *= 2) acc.sum[r] += __shfl_xor_sync(0xffffffffu, acc.sum[r], o);
    const std::int64_t row = std::int64_t{b} * p.heads + head + l.g + 8 * r;
    const float inv = acc.sum[r] > 0.f ? 1.f / acc.sum[r] : 0.f;
    const int d0 = kDims * l.warp + 2 * l.t;
    if (p.splits == 1) {
      auto* out = static_cast<__nv_bfloat16*>(p.out) + row * kMlaLatent + d0;
#pragma unroll
      for (int nt = 0; nt < kDims / 8; ++nt)
        *reinterpret_cast<__nv_bfloat162*>(out + 8 * nt) =
            __floats2bfloat162_rn(acc.o[nt][2 * r] * inv, acc.o[nt][2 * r + 1] * inv);
      continue;
    }
    if (partial != nullptr) {
      float* out = &partial->o[l.g + 8 * r][d0];
#pragma unroll
      for (int nt = 0; nt < kDims / 8; ++nt)
        *reinterpret_cast<float2*>(out + 8 * nt) =
            make_float2(acc.o[nt][2 * r] * inv, acc.o[nt][2 * r + 1] * inv);
      if (l.warp == 0 && l.t == 0)
        partial->lse[l.g + 8 * r] = acc.sum[r] > 0.f ? acc.max[r] + log2f(acc.sum[r]) : -INFINITY;
      continue;
    }
    const std::int64_t at = row * p.splits + split;
    float* out = p.partial_out + at * kMlaLatent + d0;
#pragma unroll
    for (int nt = 0; nt < kDims / 8; ++nt)
      *reinterpret_cast<float2*>(out + 8 * nt) =
          make_float2(acc.o[nt][2 * r] * inv, acc.o[nt][2 * r + 1] * inv);
    if (l.warp == 0 && l.t == 0)
      p.partial_lse[at] = acc.sum[r] > 0.f ? acc.max[r] + log2f(acc.sum[r]) : -INFINITY;
  }
}

// Combines the ranges of one (sequence, head) row: lane `lane` of kLanes threads sums its float4
// chunks of the ranges' outputs weighted by 2^(lse - max) and writes them in BF16. The partial
// results come from other SMs' CTAs, so they are read through L2 (ld.global.cg).
template <int kLanes>
__device__ void combine_row(const MlaDecodeParams& p, std::int64_t row, int lane) {
  constexpr int kVecs = kMlaLatent / 4 / kLanes;
  const float* lse = p.partial_lse + row * p.splits;
  float m = -INFINITY;
#pragma unroll 4  // L2 reads in flight together: the combine ends the kernel
  for (int i = 0; i < p.splits; ++i) m = fmaxf(m, __ldcg(lse + i));
  float4 acc[kVecs] = {};
  float total = 0.f;
#pragma unroll 2
  for (int i = 0; i < p.splits; ++i) {
    const float w = exp2f(__ldcg(lse + i) - m);  // 0 for an empty range (-inf)
    total += w;
    const auto* part =
        reinterpret_cast<const float4*>(p.partial_out + (row * p.splits + i) * kMlaLatent) + lane;
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
      const float4 x = __ldcg(part + kLanes * v);
      acc[v].x += w * x.x, acc[v].y += w * x.y, acc[v].z += w * x.z, acc[v].w += w * x.w;
    }
  }
  const float inv = 1.f / total;
  auto* out = static_cast<__nv_bfloat16*>(p.out) + row * kMlaLatent;
#pragma unroll
  for (int v = 0; v < kVecs; ++v)
    *reinterpret_cast<uint2*>(out + 4 * (lane + kLanes * v)) = make_uint2(
        pack_bf16x2(acc[v].x * inv, acc[v].y * inv), pack_bf16x2(acc[v].z * inv, acc[v].w * inv));
}

// Combines the ranges of a cluster (one CTA per range of one (sequence, 16 heads)) from their
// shared memory: CTA `rank` of `ranks` takes every ranks-th group of 256 float4 chunks of the 16
// heads' outputs. Called by every thread after a cluster barrier that published the partials.
__device__ void combine_cluster(const MlaDecodeParams& p, std::int64_t row0, Partial& mine) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank()), ranks = p.splits;
  constexpr int kVecsPerHead = kMlaLatent / 4;
  const Partial* peer[kMlaClusterSplits];
#pragma unroll
  for (int i = 0; i < kMlaClusterSplits; ++i)
    peer[i] = i < ranks ? cluster.map_shared_rank(&mine, i) : nullptr;
  for (int c = rank * kThreads + static_cast<int>(threadIdx.x); c < kHeads * kVecsPerHead;
       c += ranks * kThreads) {
    const int head = c / kVecsPerHead, vec = c % kVecsPerHead;
    float lse[kMlaClusterSplits], m = -INFINITY;
#pragma unroll
    for (int i = 0; i < kMlaClusterSplits; ++i) {
      lse[i] = i < ranks ? peer[i]->lse[head] : -INFINITY;
      m = fmaxf(m, lse[i]);
    }
    float4 acc = {0.f, 0.f, 0.f, 0.f};
    float total = 0.f;
#pragma unroll
    for (int i = 0; i < kMlaClusterSplits; ++i) {
      if (i >= ranks) break;
      const float w = exp2f(lse[i] - m);  // 0 for an empty range (-inf)
      const float4 x = *reinterpret_cast<const float4*>(&peer[i]->o[head][4 * vec]);
      total += w;
      acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
    }
    const float inv = 1.f / total;
    auto* out = static_cast<__nv_bfloat16*>(p.out) + (row0 + head) * kMlaLatent + 4 * vec;
    *reinterpret_cast<uint2*>(out) =
        make_uint2(pack_bf16x2(acc.x * inv, acc.y * inv), pack_bf16x2(acc.z * inv, acc.w * inv));
  }
}

// Whether this CTA is the last of its (sequence, 16 heads) to have written its range's result:
// every thread's writes are made visible device-wide before thread 0 counts the CTA in. The
// count wraps to zero at the last arrival (atomicInc), so the counters need no zeroing per call.
__device__ bool last_to_finish(const MlaDecodeParams& p, int b, int head0, int& flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    const std::int64_t group = std::int64_t{b} * (p.heads / kHeads) + head0 / kHeads;
    const auto last = static_cast<unsigned>(p.splits - 1);
    flag = atomicInc(p.arrivals + group, last) == last;
  }
  __syncthreads();
  if (flag == 0) return false;
  __threadfence();  // the other CTAs' results, published by their fences, are read after this
  return true;
}

// kEarly (p.early_first_tile): the context length, page ids and first tile are read before the
// PDL wait, as the caller vouches that the kernel queued just before writes none of them.
template <bool kFp8, bool kEarly = false>
__global__ void __launch_bounds__(kThreads, 2)
    mla_decode_split_kernel(const __grid_constant__ CUtensorMap cache_map, MlaDecodeParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  auto& s = smem_of<kFp8>(smem_raw);
  if (!kFp8 && threadIdx.x == 0) device::tma_prefetch(&cache_map);  // a parameter: no wait
  // Nothing in global memory is read before the previous kernel has finished.
  if constexpr (!kEarly) asm volatile("griddepcontrol.wait;\n" ::: "memory");
  const Lane l = lane_of();
  const int head0 = blockIdx.x * kHeads, split = blockIdx.y, b = blockIdx.z;
  const std::int64_t ctx = p.context_lens[b];
  const int tiles = static_cast<int>((ctx + kTile - 1) / kTile);
  const int per_split = (tiles + p.splits - 1) / p.splits;
  const int first = min(tiles, split * per_split), last = min(tiles, first + per_split);
  const std::int64_t* table = p.block_tables + b * p.table_stride;
  const auto arm = [&](int tile) {  // thread 0, before the barrier that precedes the copies
    if (threadIdx.x == 0 && tile < last)
      device::mbarrier_arrive_expect(&s.full[(tile - first) % kStages],
                                     Stages<kFp8>::bytes(valid_tokens(ctx, tile)));
  };
  // A tile's page id. BF16 tiles read it a tile ahead of their copy, as a read at the copy would
  // add its latency to every tile (each warp's lane 0 issues box copies before its math); FP8
  // tiles at the copy (one thread issues it; read ahead, that kernel measured 2% slower).
  const auto page_of = [&](int tile) { return tile < last ? table[tile / 2] : std::int64_t{0}; };
  const auto copy = [&](int tile, std::int64_t page) {  // every thread, after a block barrier
    if (tile >= last) return;
    const int stage = (tile - first) % kStages, valid = valid_tokens(ctx, tile);
    if constexpr (kFp8)
      if (valid < kTile) clear_rows(s.stages.raw[stage], valid);
    copy_tile(s.stages, stage, s.full[stage], cache_map, p.cache, page, tile % 2, valid);
  };
  if (threadIdx.x == 0) {
    for (int i = 0; i < kStages; ++i) device::mbarrier_init(&s.full[i], 1);
    for (int i = 0; i < kStages - 1; ++i) arm(first + i);
    device::fence_shared_for_async();
  }
  __syncthreads();  // the mbarriers are set up and armed
  for (int i = 0; i < kStages - 1; ++i) copy(first + i, page_of(first + i));
  std::int64_t next_page = page_of(first + kStages - 1);  // of the loop's first copy
  if constexpr (kEarly)  // the query (written by the kernel just before) only after the wait
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
  load_query(s.q, p, b, head0);  // behind the first tile's copies
  device::cp_async_commit();
  device::cp_async_wait<0>();  // the query, published by the first barrier below
  Acc acc;
  for (int tile = first; tile < last; ++tile) {
    const int stage = (tile - first) % kStages;
    device::mbarrier_wait(&s.full[stage], (tile - first) / kStages % 2);
    if constexpr (!kFp8)  // a context's last, partial tile: rows past it hold anything
      if (valid_tokens(ctx, tile) < kTile) clear_rows(s.stages.kv[stage], valid_tokens(ctx, tile));
    arm(tile + kStages - 1);  // the previous tile's stage, its phase completed
    __syncthreads();  // every warp is done with the previous tile: its stage may be refilled
    copy(tile + kStages - 1, kFp8 ? page_of(tile + kStages - 1) : next_page);
    if constexpr (!kFp8) next_page = page_of(tile + kStages);
    tile_math(s, stage, l, valid_tokens(ctx, tile), p.scale * kLog2e, acc);
  }
  // Once every CTA is here, the next kernel's CTAs may take the slots of those that retire (not
  // earlier: waiting CTAs of it would hold slots that this grid's later CTAs need, unevenly).
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  // launched as clusters of the sequence's ranges (a plain launch has clusters of one CTA)
  const bool in_cluster =
      p.splits > 1 && cooperative_groups::this_cluster().num_blocks() == p.splits;
  if (in_cluster) __syncthreads();  // every warp is done with the stages the partial overlays
  write_result(p, b, head0, split, l, acc, in_cluster ? &s.partial : nullptr);
  if (in_cluster) {
    cooperative_groups::this_cluster().sync();  // every range's partial published
    combine_cluster(p, std::int64_t{b} * p.heads + head0, s.partial);
    cooperative_groups::this_cluster().sync();  // no CTA leaves while a peer reads its partial
    return;
  }
  if (p.splits == 1 || p.splits > kMlaFusedSplits || !last_to_finish(p, b, head0, s.combines))
    return;
  constexpr int kLanes = kThreads / kHeads;  // per head
  const int tid = static_cast<int>(threadIdx.x);
  combine_row<kLanes>(p, std::int64_t{b} * p.heads + head0 + tid / kLanes, tid % kLanes);
}

// Ranges beyond kMlaFusedSplits: one CTA of 128 threads per (sequence, head).
__global__ void __launch_bounds__(kMlaLatent / 4) mla_decode_combine_kernel(MlaDecodeParams p) {
  combine_row<kMlaLatent / 4>(p, blockIdx.x, static_cast<int>(threadIdx.x));
}

// The split kernel for these pages; the early first tile only with BF16 pages (TMA boxes).
template <bool kFp8>
auto split_kernel(bool early) {
  return early ? mla_decode_split_kernel<kFp8, !kFp8> : mla_decode_split_kernel<kFp8>;
}

// Raises the kernel's shared-memory limit (per device, so on every launch).
template <bool kFp8>
cudaError_t allow_shared_memory(bool early = false) {
  return cudaFuncSetAttribute(split_kernel<kFp8>(early),
                              cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes<kFp8>);
}

// CTAs of the kernel that fit on one SM (two on Hopper), computed once.
template <bool kFp8>
int ctas_per_sm() {
  static const int per_sm = [] {
    int n = 1;
    if (allow_shared_memory<kFp8>() != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, mla_decode_split_kernel<kFp8>, kThreads,
                                                      kSmemBytes<kFp8>) != cudaSuccess)
      n = 1;
    return std::max(n, 1);
  }();
  return per_sm;
}

// Clusters of `size` CTAs of the kernel that the device holds at once, computed once per size.
template <bool kFp8>
int cluster_capacity(int size) {
  static const auto capacity = [] {
    std::array<int, kMlaClusterSplits + 1> n{};
    for (int ranks = 2; ranks <= kMlaClusterSplits; ++ranks) {
      cudaLaunchAttribute cluster{};
      cluster.id = cudaLaunchAttributeClusterDimension;
      cluster.val.clusterDim = {1, static_cast<unsigned>(ranks), 1};
      cudaLaunchConfig_t config{};
      config.gridDim = dim3(1, ranks, 1);
      config.blockDim = dim3(kThreads);
      config.dynamicSmemBytes = kSmemBytes<kFp8>;
      config.attrs = &cluster;
      config.numAttrs = 1;
      if (allow_shared_memory<kFp8>() != cudaSuccess ||
          cudaOccupancyMaxActiveClusters(&n[ranks], mla_decode_split_kernel<kFp8>, &config) !=
              cudaSuccess)
        n[ranks] = 0;
    }
    cudaGetLastError();  // a failed query leaves no error behind
    return n;
  }();
  return capacity[size];
}

// Launches the split kernel; a BF16 cache of `pages` pages goes with its tensor map (boxes of a
// tile's 32 rows x 64 dims, 128-byte swizzled; for FP8 rows the map is unused, left zero).
template <bool kFp8>
cudaError_t launch_split(const MlaDecodeParams& p, std::int64_t pages, cudaStream_t st) {
  CUtensorMap map{};
  if (!kFp8 && !encode_tensor_map(map, p.cache, pages * kMlaPage, kMlaEntry, kTile))
    return cudaErrorInvalidValue;
  cudaError_t rc = allow_shared_memory<kFp8>(p.early_first_tile);
  if (rc != cudaSuccess) return rc;
  cudaLaunchAttribute pdl{};
  pdl.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  pdl.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(p.heads / kHeads, p.splits, p.batch);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kSmemBytes<kFp8>;
  config.stream = st;
  cudaLaunchAttribute attrs[2] = {pdl, {}};
  attrs[1].id = cudaLaunchAttributeClusterDimension;
  attrs[1].val.clusterDim = {1, static_cast<unsigned>(p.splits), 1};
  config.attrs = attrs;
  // clusters only where all of them fit on the device at once (else some would wait a wave)
  const bool clusters =
      p.splits > 1 && p.splits <= kMlaClusterSplits &&
      std::int64_t{p.batch} * (p.heads / kHeads) <= cluster_capacity<kFp8>(p.splits);
  config.numAttrs = clusters ? 2 : 1;
  return cudaLaunchKernelEx(&config, split_kernel<kFp8>(p.early_first_tile), map, p);
}

}  // namespace

int mla_decode_cluster_capacity(int size, bool cache_fp8) {
  if (size < 2 || size > kMlaClusterSplits) return 0;
  return cache_fp8 ? cluster_capacity<true>(size) : cluster_capacity<false>(size);
}

int mla_decode_default_splits(int batch, int heads, int multiprocessors, bool cache_fp8) {
  const int ctas = batch * (heads / kHeads);
  const int per_sm = cache_fp8 ? ctas_per_sm<true>() : ctas_per_sm<false>();
  return std::max(1, per_sm * multiprocessors / std::max(ctas, 1));
}

int launch_mla_decode(const MlaDecodeParams& p, std::int64_t cache_pages, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  const cudaError_t rc = p.cache_fp8 ? launch_split<true>(p, cache_pages, st)
                                     : launch_split<false>(p, cache_pages, st);
  if (rc != cudaSuccess || p.splits == 1 || p.splits <= kMlaFusedSplits)
    return static_cast<int>(rc);
  return launch_mla_decode_combine(p, stream);
}

int launch_mla_decode_combine(const MlaDecodeParams& p, void* stream) {
  mla_decode_combine_kernel<<<p.batch * p.heads, kMlaLatent / 4, 0,
                              static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
