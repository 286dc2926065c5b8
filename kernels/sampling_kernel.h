// Raw-pointer interface of the sampling and log-probability CUDA kernels (no LibTorch here):
// per-row temperature/top-k/top-p/min-p sampling over a whole vocabulary without sorting it, and
// the online log-sum-exp + target gather that turns vocab chunks of logits into token logprobs.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

// One sampled token per entry; entry i reads logits row `row_of[i]` (or row i when row_of is
// null), so several samples of one prompt can share a row. Per entry: temperature (<= 0 greedy),
// top_k (<= 0 off), top_p (>= 1 off), min_p (<= 0 off), and `uniform`, the entry's draw in [0, 1)
// from its own seeded stream. Semantics of engine/sampler.h: the filtered distribution is walked
// in descending-probability order when a filter applies, in token order otherwise.
struct SampleParams {
  const void* logits = nullptr;  // [rows, vocab], row stride `stride` elements
  ElementType type = ElementType::kFloat32;
  std::int64_t entries = 0, vocab = 0, stride = 0;
  const std::int64_t* row_of = nullptr;
  const float* temperature = nullptr;
  const std::int64_t* top_k = nullptr;
  const float* top_p = nullptr;
  const float* min_p = nullptr;
  const double* uniform = nullptr;
  std::int64_t* token = nullptr;  // out [entries]
  float* logprob = nullptr;       // out: log-probability under the filtered distribution
  float* raw_logprob = nullptr;   // out: log-probability under the model's own softmax
};

int launch_sample(const SampleParams& params, void* stream);

// One vocab chunk [rows, cols] (float32, contiguous) of logits for vocab ids
// [vocab_start, vocab_start + cols): folds it into a running max / sum of exponentials per row
// and picks each row's target logit when the target falls in the chunk. The first chunk starts
// the state; the last one also writes out = target_logit - log-sum-exp.
struct LogprobChunkParams {
  const float* logits = nullptr;
  std::int64_t rows = 0, cols = 0, vocab_start = 0;
  const std::int64_t* targets = nullptr;  // [rows]
  float* running_max = nullptr;           // [rows] state
  float* running_sum = nullptr;           // [rows] state
  float* target_logit = nullptr;          // [rows] state
  float* out = nullptr;                   // [rows], written when `last`
  bool first = false, last = false;
};

int launch_logprob_chunk(const LogprobChunkParams& params, void* stream);

}  // namespace ponder::kernels
