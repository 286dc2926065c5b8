// Raw-pointer interface of the MLA decode attention CUDA kernel (no LibTorch here): one new
// query token per sequence against its paged latent cache (BF16, 576-wide entries = 512 latent +
// 64 RoPE, or FP8 rows of 656 bytes; pages of 64 tokens), values being the latent itself (absorbed
// weights), split over the context with a combine step.
#pragma once

#include <cstdint>

namespace ponder::kernels {

inline constexpr int kMlaLatent = 512, kMlaRope = 64, kMlaEntry = 576, kMlaPage = 64;
// FP8 cache rows (bytes): the 512 latent values in FP8 e4m3, one FP32 scale per kMlaFp8Group of
// them, then the 64 RoPE dims in BF16; a latent value is fp8 * scale rounded to BF16.
inline constexpr int kMlaFp8Group = 128;
constexpr std::int64_t mla_cache_fp8_bytes(std::int64_t lora, std::int64_t rope) {
  return lora + 4 * (lora / kMlaFp8Group) + 2 * rope;
}
inline constexpr int kMlaFp8Entry = static_cast<int>(mla_cache_fp8_bytes(kMlaLatent, kMlaRope));
// Up to kMlaClusterSplits ranges per sequence, the ranges of each (sequence, 16 heads) run as one
// thread-block cluster and combine their results through distributed shared memory; up to
// kMlaFusedSplits, the last CTA of each (sequence, 16 heads) to finish combines them from global
// memory; more go to a separate combine kernel.
inline constexpr int kMlaClusterSplits = 8, kMlaFusedSplits = 16;

struct MlaDecodeParams {
  const void* q = nullptr;                     // [batch, heads, 576] bf16, contiguous
  const void* cache = nullptr;                 // [pages, 64, 576] bf16 or [pages, 64, 656] u8
  const std::int64_t* block_tables = nullptr;  // [batch, table_stride] page ids
  std::int64_t table_stride = 0;
  const std::int64_t* context_lens = nullptr;  // [batch], >= 1
  void* out = nullptr;                         // [batch, heads, 512] bf16
  float* partial_out = nullptr;                // [batch, heads, splits, 512] (splits > 1)
  float* partial_lse = nullptr;                // [batch, heads, splits] (log2 units, splits > 1)
  unsigned* arrivals = nullptr;  // [batch, heads / 16], zero (1 < splits <= fused limit): left zero
  int batch = 0, heads = 0, splits = 1;  // heads: a multiple of 16
  float scale = 1.f;
  bool cache_fp8 = false;  // FP8 rows (kMlaFp8Entry bytes, 16-byte aligned)
  // BF16 pages: each CTA reads its context length, page ids and first tile before the PDL wait.
  // Only when the kernel queued just before on the stream writes none of context_lens,
  // block_tables and the cache (else the first tile may be read before that kernel's writes land).
  bool early_first_tile = false;
};

// Splits each context into `splits` ranges of 32-token tiles, one CTA per (range, 16 heads,
// sequence), then combines the ranges (splits > 1; the workspace is unused when splits == 1).
// With a combine by the last CTA the `arrivals` counters must be zero and are left zero, so calls
// sharing them must not run concurrently. Launched with programmatic stream serialization (PDL).
// BF16 caches (of `cache_pages` pages) are read through a TMA tensor map: q and cache 16-byte
// aligned. Returns the CUDA error code (0 on success).
int launch_mla_decode(const MlaDecodeParams& params, std::int64_t cache_pages, void* stream);
// Clusters of `size` ranges (2..kMlaClusterSplits) the device holds at once (0 otherwise); a
// launch whose clusters do not all fit uses the global-memory combine instead.
int mla_decode_cluster_capacity(int size, bool cache_fp8 = false);
// Ranges per sequence that fill the device's resident CTA slots once at this batch and heads.
int mla_decode_default_splits(int batch, int heads, int multiprocessors, bool cache_fp8 = false);
// The combine step alone: out = the ranges' partial results weighted by their sums (splits > 1).
int launch_mla_decode_combine(const MlaDecodeParams& params, void* stream);

// Hopper (sm_90a, compute capability 9.0 only) kernel for heads % 64 == 0: one CTA of two
// warpgroups per (64 heads, range, sequence) with wgmma, ranges of whole pages, then the combine
// kernel when splits > 1 (`arrivals` unused). q and cache 16-byte aligned (TMA). FP8 pages are
// converted to BF16 in shared memory by a third warpgroup (the reference's dequantisation).
int launch_mla_decode_wgmma(const MlaDecodeParams& params, std::int64_t cache_pages, void* stream);
// Ranges per sequence for it: one CTA per SM, filled once (at least one page a range).
int mla_decode_wgmma_default_splits(int batch, int heads, int multiprocessors);

}  // namespace ponder::kernels
