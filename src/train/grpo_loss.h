// GRPO-family objective pieces as plain ATen functions over padded [sequences, tokens] tensors
// with a response mask: group advantages, clipped ratio loss, aggregation, KL estimators.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace ponder::train {

// rewards [groups, n] -> advantages [groups, n]: r - mean(group), divided by (std + eps) when
// scale_by_std (GRPO) or not (Dr.GRPO). std is the unbiased sample std, as in GRPO/TRL.
at::Tensor group_advantages(const at::Tensor& rewards, bool scale_by_std, double eps = 1e-6);

// Reduces per-token values [B, L] under mask [B, L]: token_mean (over all response tokens),
// sequence_mean (mean of per-sequence means) or constant (sum / (B * max_tokens), Dr.GRPO).
at::Tensor aggregate(const at::Tensor& values, const at::Tensor& mask, const std::string& mode,
                     std::int64_t max_tokens);
// aggregate() in two halves, for a minibatch whose rows are spread over processes: each sums its
// rows (aggregate_sum) and divides by the whole minibatch's denominator, the sum over processes
// of aggregate_count (masked tokens, rows, or rows * max_tokens) clamped to at least 1.
at::Tensor aggregate_sum(const at::Tensor& values, const at::Tensor& mask, const std::string& mode);
double aggregate_count(const at::Tensor& mask, const std::string& mode, std::int64_t max_tokens);

// Response mask [B, max_tokens]: 1 on each response's tokens; with filter_truncated, responses
// cut at the length limit get none (DAPO overlong filtering).
at::Tensor response_mask(const std::vector<std::int64_t>& lengths,
                         const std::vector<bool>& truncated, std::int64_t max_tokens,
                         bool filter_truncated);

struct PolicyLoss {
  at::Tensor loss;           // scalar to minimise
  at::Tensor clip_fraction;  // share of tokens whose ratio was clipped
  at::Tensor ratio_mean;
};

// Denominators of a (possibly sharded) minibatch, both >= 1: `loss` of the aggregation mode,
// `tokens` the masked tokens (for clip fraction and ratio mean).
struct LossDenominators {
  double loss = 1, tokens = 1;
};

// -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A) per token, times the optional
// per-token weights (truncated importance sampling), aggregated over these rows alone.
PolicyLoss clipped_policy_loss(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask,
                               double clip_low, double clip_high, const std::string& aggregation,
                               std::int64_t max_tokens, const at::Tensor& weights = {});
// The same for this process's share of a minibatch: sums over these rows divided by the whole
// minibatch's denominators, so the shares of all processes add up to the minibatch's values.
PolicyLoss clipped_policy_loss(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask,
                               double clip_low, double clip_high, const std::string& aggregation,
                               const LossDenominators& denominators,
                               const at::Tensor& weights = {});

// Truncated importance-sampling weights min(exp(trainer - rollout), cap) [B, L]: corrects for
// the rollout engine sampling from a slightly different distribution than the trainer computes.
at::Tensor truncated_importance_weights(const at::Tensor& trainer_logprobs,
                                        const at::Tensor& rollout_logprobs, double cap);

// Per-token KL(policy || reference) estimates from log-probs: k1 = log r, k2 = (log r)^2 / 2,
// k3 = exp(-log r) + log r - 1 with log r = logprobs - ref_logprobs.
at::Tensor kl_estimate(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                       const std::string& estimator);

}  // namespace ponder::train
