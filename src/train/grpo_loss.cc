#include "train/grpo_loss.h"

#include <algorithm>

#include "core/error.h"

namespace ponder::train {

at::Tensor group_advantages(const at::Tensor& rewards, bool scale_by_std, double eps) {
  const at::Tensor centred = rewards - rewards.mean(1, /*keepdim=*/true);
  if (!scale_by_std) return centred;
  return centred / (rewards.std(1, /*unbiased=*/true, /*keepdim=*/true) + eps);
}

at::Tensor aggregate_sum(const at::Tensor& values, const at::Tensor& mask,
                         const std::string& mode) {
  const at::Tensor masked = values * mask;
  if (mode == "token_mean" || mode == "constant") return masked.sum();
  if (mode == "sequence_mean") return (masked.sum(1) / mask.sum(1).clamp_min(1)).sum();
  throw Error("grpo.loss_aggregation: unknown mode '" + mode + "'");
}

double aggregate_count(const at::Tensor& mask, const std::string& mode, std::int64_t max_tokens) {
  if (mode == "token_mean") return mask.sum().item<double>();
  if (mode == "sequence_mean") return static_cast<double>(mask.size(0));
  if (mode == "constant") return static_cast<double>(mask.size(0) * max_tokens);
  throw Error("grpo.loss_aggregation: unknown mode '" + mode + "'");
}

at::Tensor aggregate(const at::Tensor& values, const at::Tensor& mask, const std::string& mode,
                     std::int64_t max_tokens) {
  return aggregate_sum(values, mask, mode) / std::max(1.0, aggregate_count(mask, mode, max_tokens));
}

at::Tensor response_mask(const std::vector<std::int64_t>& lengths,
                         const std::vector<bool>& truncated, std::int64_t max_tokens,
                         bool filter_truncated) {
  at::Tensor mask = at::zeros({static_cast<std::int64_t>(lengths.size()), max_tokens});
  for (std::size_t i = 0; i < lengths.size(); ++i)
    if (!(filter_truncated && truncated[i]))
      mask[static_cast<std::int64_t>(i)].narrow(0, 0, lengths[i]).fill_(1);
  return mask;
}

PolicyLoss clipped_policy_loss(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask,
                               double clip_low, double clip_high, const std::string& aggregation,
                               std::int64_t max_tokens, const at::Tensor& weights) {
  const LossDenominators local{std::max(1.0, aggregate_count(mask, aggregation, max_tokens)),
                               std::max(1.0, aggregate_count(mask, "token_mean", max_tokens))};
  return clipped_policy_loss(logprobs, old_logprobs, advantages, mask, clip_low, clip_high,
                             aggregation, local, weights);
}

PolicyLoss clipped_policy_loss(const at::Tensor& logprobs, const at::Tensor& old_logprobs,
                               const at::Tensor& advantages, const at::Tensor& mask,
                               double clip_low, double clip_high, const std::string& aggregation,
                               const LossDenominators& denominators, const at::Tensor& weights) {
  const at::Tensor ratio = at::exp(logprobs - old_logprobs);
  const at::Tensor a = advantages.unsqueeze(1).expand_as(ratio);
  const at::Tensor unclipped = ratio * a;
  const at::Tensor clipped = at::clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * a;
  at::Tensor per_token = -at::minimum(unclipped, clipped);
  if (weights.defined()) per_token = per_token * weights;
  const at::Tensor was_clipped = (clipped < unclipped).to(at::kFloat);
  return {aggregate_sum(per_token, mask, aggregation) / denominators.loss,
          (aggregate_sum(was_clipped, mask, "token_mean") / denominators.tokens).detach(),
          (aggregate_sum(ratio, mask, "token_mean") / denominators.tokens).detach()};
}

at::Tensor truncated_importance_weights(const at::Tensor& trainer_logprobs,
                                        const at::Tensor& rollout_logprobs, double cap) {
  return at::exp(trainer_logprobs - rollout_logprobs).clamp_max(cap).detach();
}

at::Tensor kl_estimate(const at::Tensor& logprobs, const at::Tensor& ref_logprobs,
                       const std::string& estimator) {
  const at::Tensor log_ratio = logprobs - ref_logprobs;
  if (estimator == "k1") return log_ratio;
  if (estimator == "k2") return 0.5 * log_ratio.pow(2);
  if (estimator == "k3") return at::exp(-log_ratio) + log_ratio - 1;
  throw Error("grpo.kl_estimator: unknown estimator '" + estimator + "'");
}

}  // namespace ponder::train
