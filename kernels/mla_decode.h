// MLA decode attention with absorbed weights: each decoding sequence's query (W_UK folded in,
// 512 latent + 64 RoPE wide) against its paged latent cache, values being the latent. An ATen
// reference on gathered pages (any dtype/device) and the CUDA kernel for BF16 pages of 64.
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// query [D, h, lora + rope], entries [D, ctx, lora + rope] (gathered pages, zero where invalid),
// valid [D, ctx] bool -> out_latent [D, h, lora]: scores in the query's dtype, softmax in FP32,
// probabilities back in the query's dtype, as the model's absorbed decode path computes them.
at::Tensor mla_decode_reference(const at::Tensor& query, const at::Tensor& entries,
                                const at::Tensor& valid, double scale, std::int64_t lora);
// True when mla_decode_cuda takes these shapes: BF16 query [D, h % 16 == 0, 576], BF16 cache
// [pages, 64, 576], and use_kernel() holds.
bool mla_decode_supported(const at::Tensor& query, const at::Tensor& cache);
// query [D, h, 576] bf16, cache [pages, 64, 576] bf16, block_tables [D, max_pages] int64,
// context_lens [D] int64 (1 .. 64 * max_pages) -> [D, h, 512] bf16. splits: KV ranges per
// sequence, at most 2 * max_pages (0: enough CTAs to fill the GPU's resident slots once).
// check_inputs: verify on the device (one synchronisation) that the contexts fit the tables and
// their pages the cache; callers that checked once for all layers of a step pass false.
// allow_wgmma: heads % 64 == 0 on a compute capability 9.0 GPU take the wgmma kernel (64 heads
// per CTA, ranges of whole pages); false keeps the mma.sync kernel (for comparisons).
at::Tensor mla_decode_cuda(const at::Tensor& query, const at::Tensor& cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens,
                           double scale, std::int64_t splits = 0, bool check_inputs = true,
                           bool allow_wgmma = true);

}  // namespace ponder::kernels
