// MLA decode attention with absorbed weights: each decoding sequence's query (W_UK folded in,
// 512 latent + 64 RoPE wide) against its paged latent cache, values being the latent. An ATen
// reference on gathered pages (any dtype/device), the CUDA kernel for BF16 or FP8 pages of 64, and
// the FP8 cache rows' quantisation (ATen, any device).
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// query [D, h, lora + rope], entries [D, ctx, lora + rope] (gathered pages, zero where invalid),
// valid [D, ctx] bool -> out_latent [D, h, lora]: scores in the query's dtype, softmax in FP32,
// probabilities back in the query's dtype, as the model's absorbed decode path computes them.
at::Tensor mla_decode_reference(const at::Tensor& query, const at::Tensor& entries,
                                const at::Tensor& valid, double scale, std::int64_t lora);
// FP8 cache rows (the layout of kMlaFp8Entry, for any lora % 128 == 0 and rope): latent [T, lora]
// and rope [T, rope] -> uint8 [T, lora + 4 lora / 128 + 2 rope]: the latent in FP8 e4m3 with one
// FP32 scale per 128 values (amax / 448; 1 for an all-zero group), then the RoPE dims in BF16.
at::Tensor mla_cache_quantize(const at::Tensor& latent, const at::Tensor& rope);
// Rows [..., bytes] of mla_cache_quantize -> [..., lora + rope] in `dtype`: fp8 * scale in FP32,
// rounded once to dtype; the RoPE dims from BF16.
at::Tensor mla_cache_dequantize(const at::Tensor& rows, std::int64_t lora, at::ScalarType dtype);
// Cache entries [..., width] as dtype: the rows themselves (converted), or dequantised FP8 rows.
at::Tensor mla_cache_entries(const at::Tensor& rows, std::int64_t lora, at::ScalarType dtype);

// The decode query [D, h, lora + rope] of mla_decode_cuda written into `query` (contiguous, the
// inputs' dtype) without a concatenation: q_nope [D, h, nope] times w_uk [h, nope, lora] (W_UK
// folded into the query) by one batched cuBLAS GEMM straight into columns [0, lora), then q_rope
// [D, h, rope] (not yet rotated) rotated by the interleaved RoPE kernel with cos/sin [D, rope / 2]
// into the last rope columns. The RoPE kernel runs last; with trigger_decode it triggers its
// dependents at its start, so a decode launched right after it (PDL) starts while it runs. Equals
// cat({einsum("thd,hdc->thc", {q_nope, w_uk}), rope_cuda(q_rope, cos, sin, true)}, -1).
void mla_decode_query_cuda(const at::Tensor& query, const at::Tensor& q_nope,
                           const at::Tensor& w_uk, const at::Tensor& q_rope, const at::Tensor& cos,
                           const at::Tensor& sin, bool trigger_decode = true);

// True when mla_decode_cuda takes these shapes: BF16 query [D, h % 16 == 0, 576], a 16-byte
// aligned cache, BF16 [pages, 64, 576] or FP8 (uint8 [pages, 64, 656]), and use_kernel() holds.
bool mla_decode_supported(const at::Tensor& query, const at::Tensor& cache);
// query [D, h, 576] bf16, cache [pages, 64, 576] bf16 or [pages, 64, 656] uint8 (FP8 rows),
// block_tables [D, max_pages] int64,
// context_lens [D] int64 (1 .. 64 * max_pages) -> [D, h, 512] bf16. splits: KV ranges per
// sequence, at most 2 * max_pages (0: enough CTAs to fill the GPU's resident slots once).
// check_inputs: verify on the device (one synchronisation) that the contexts fit the tables and
// their pages the cache; callers that checked once for all layers of a step pass false.
// allow_wgmma: heads % 64 == 0 on a compute capability 9.0 GPU take the wgmma kernel (64 heads
// per CTA, ranges of whole pages; BF16 or FP8 pages); false keeps the mma.sync kernel (for
// comparisons).
// early_first_tile: the caller vouches that the kernel queued just before this call on the stream
// writes none of block_tables, context_lens and the cache, and was itself launched without PDL
// (so everything queued before it, e.g. the cache scatter, had finished when it started). The
// engine's is mla_decode_query_cuda's RoPE kernel or the query's concatenation. The 16-head
// kernel over BF16 pages then reads the first tile before waiting for that kernel (PDL). Ignored
// where block_tables or context_lens need a conversion (int64, contiguous) or the cache a copy
// (contiguous), as those kernels would be the one just before, and by the wgmma kernel and FP8
// pages.
at::Tensor mla_decode_cuda(const at::Tensor& query, const at::Tensor& cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens,
                           double scale, std::int64_t splits = 0, bool check_inputs = true,
                           bool allow_wgmma = true, bool early_first_tile = false);

}  // namespace ponder::kernels
