// Token sampling for the rollout engine: temperature, top-k, top-p and min-p over one row of
// logits, seeded per sequence so a seed gives the same text whatever else is in the batch.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ponder::engine {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;
  std::int64_t top_k = 0;  // 0 = off
  double min_p = 0.0;
  std::int64_t max_tokens = 256;
  std::vector<std::string> stop;             // stop strings, matched on decoded text
  std::vector<std::int64_t> stop_token_ids;  // in addition to the model's EOS
  bool ignore_eos = false;
  std::uint64_t seed = 0;
};

// Per-sequence random stream: seeded from (seed, sample index) only, never from batch position.
class SequenceRng {
 public:
  SequenceRng(std::uint64_t seed, std::uint64_t sample_index);
  double uniform();  // [0, 1)
  // Gives `u` (a draw taken from this stream and not used) back: the next uniform() returns it.
  void unread(double u);

 private:
  std::mt19937_64 engine_;
  std::optional<double> unread_;
};

struct SampledToken {
  std::int64_t token = 0;
  double logprob = 0.0;      // under the filtered sampling distribution
  double raw_logprob = 0.0;  // under the model's own softmax (what the trainer recomputes)
};

// The filtered distribution as (token, probability): sorted by probability, descending, when a
// top-k/top-p/min-p filter applies; in token order (no sort) when none does.
// Order of filters: temperature, top-k, top-p (smallest prefix reaching top_p), min-p (relative to
// the most likely token), then renormalisation.
std::vector<std::pair<std::int64_t, double>> filtered_distribution(const at::Tensor& logits,
                                                                   const SamplingParams& params);

SampledToken sample_token(const at::Tensor& logits, const SamplingParams& params, SequenceRng& rng);

// The per-entry settings the GPU sampler takes (kernels::SamplingBatch), one value per entry;
// draws each entry's uniform from its stream (greedy entries draw nothing).
struct SamplingSettings {
  std::vector<double> temperature, top_p, min_p, uniform;
  std::vector<std::int64_t> top_k;
};
SamplingSettings sampling_settings(const std::vector<const SamplingParams*>& params,
                                   const std::vector<SequenceRng*>& rngs);

// One token per entry i from logits row rows[i] ([rows, vocab]) with params[i] and rngs[i]: on
// the GPU in one batched kernel (kernels::sample_cuda) when the logits are there, else
// sample_token per entry. Each stream gives its one draw exactly as sample_token takes it.
std::vector<SampledToken> sample_tokens(const at::Tensor& logits,
                                        const std::vector<std::int64_t>& rows,
                                        const std::vector<const SamplingParams*>& params,
                                        const std::vector<SequenceRng*>& rngs);

}  // namespace ponder::engine
