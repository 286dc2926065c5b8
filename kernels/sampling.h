// Sampling and token log-probabilities on the GPU: the batched top-k/top-p/min-p sampler (the
// CPU reference is engine::sample_token) and token logprobs over the LM head in vocab chunks
// with an ATen reference, each with a thin binding to its CUDA kernel.
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// Per-entry sampling settings, [entries] tensors on any device (engine/sampler.h semantics):
// temperature (float, <= 0 greedy), top_k (int64, <= 0 off), top_p (float, >= 1 off), min_p
// (float, <= 0 off), uniform (double in [0, 1), the entry's draw from its seeded stream), and
// row_of (int64, optional: the logits row each entry samples from; default entry i -> row i).
struct SamplingBatch {
  at::Tensor temperature, top_k, top_p, min_p, uniform, row_of;
};

struct SampledTokens {
  at::Tensor token;        // int64 [entries]
  at::Tensor logprob;      // float [entries], under the filtered distribution (0 when greedy)
  at::Tensor raw_logprob;  // float [entries], under the model's softmax
};

// logits [rows, vocab] (float32/bfloat16/float16, CUDA), finite. No sort of the rows.
SampledTokens sample_cuda(const at::Tensor& logits, const SamplingBatch& batch);

// log_softmax(hidden @ lm_head^T)[targets] in FP32, computed vocab chunk by chunk so the full
// [tokens, vocab] logits never exist: hidden [N, H], lm_head [V, H], targets [N] -> [N] float.
at::Tensor token_logprobs_reference(const at::Tensor& hidden, const at::Tensor& lm_head,
                                    const at::Tensor& targets);
// The kernel path when use_kernel() says so, else the reference.
at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& lm_head,
                          const at::Tensor& targets);
// Chunked GEMM (BF16/FP16 inputs with FP32 output, or FP32) followed by the fused online
// log-sum-exp + target gather kernel per chunk; `chunk` vocab rows per GEMM (0: automatic).
at::Tensor token_logprobs_cuda(const at::Tensor& hidden, const at::Tensor& lm_head,
                               const at::Tensor& targets, std::int64_t chunk = 0);

}  // namespace ponder::kernels
