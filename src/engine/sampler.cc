#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "kernels/sampling.h"

namespace ponder::engine {
namespace {

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace

SequenceRng::SequenceRng(std::uint64_t seed, std::uint64_t sample_index)
    : engine_(splitmix(splitmix(seed) ^ sample_index)) {}

double SequenceRng::uniform() {
  if (const std::optional<double> u = std::exchange(unread_, std::nullopt)) return *u;
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

void SequenceRng::unread(double u) {
  if (unread_) throw Error("SequenceRng::unread: a draw was given back already");
  unread_ = u;
}

std::vector<std::pair<std::int64_t, double>> filtered_distribution(const at::Tensor& logits,
                                                                   const SamplingParams& p) {
  if (p.temperature <= 0)
    throw Error("filtered_distribution: temperature must be > 0 (0 means greedy)");
  const at::Tensor probs = (logits.to(at::kDouble) / p.temperature).softmax(-1).contiguous();
  if (p.top_k <= 0 && p.top_p >= 1.0 && p.min_p <= 0) {
    const double* prob = probs.data_ptr<double>();
    std::vector<std::pair<std::int64_t, double>> result(static_cast<std::size_t>(probs.numel()));
    for (std::int64_t i = 0; i < probs.numel(); ++i) result[i] = {i, prob[i]};
    return result;
  }
  const auto [sorted, order] = probs.sort(/*dim=*/-1, /*descending=*/true);
  const double* prob = sorted.data_ptr<double>();
  const std::int64_t* index = order.data_ptr<std::int64_t>();
  std::int64_t keep = probs.numel();
  if (p.top_k > 0) keep = std::min(keep, p.top_k);
  if (p.top_p < 1.0) {
    double kept_mass = 0, total = 0;
    for (std::int64_t i = 0; i < keep; ++i) total += prob[i];
    for (std::int64_t i = 0; i < keep; ++i) {
      kept_mass += prob[i];
      if (kept_mass >= p.top_p * total) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0)
    while (keep > 1 && prob[keep - 1] < p.min_p * prob[0]) --keep;
  double mass = 0;
  for (std::int64_t i = 0; i < keep; ++i) mass += prob[i];
  std::vector<std::pair<std::int64_t, double>> result;
  result.reserve(keep);
  for (std::int64_t i = 0; i < keep; ++i) result.emplace_back(index[i], prob[i] / mass);
  return result;
}

SampledToken sample_token(const at::Tensor& logits, const SamplingParams& params,
                          SequenceRng& rng) {
  const at::Tensor row = logits.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor raw = row.log_softmax(-1);
  if (params.temperature <= 0) {
    const std::int64_t token = row.argmax().item<std::int64_t>();
    return {token, 0.0, raw[token].item<double>()};
  }
  const auto distribution = filtered_distribution(row, params);
  const double u = rng.uniform();
  double cumulative = 0;
  std::size_t chosen = distribution.size() - 1;
  for (std::size_t i = 0; i < distribution.size(); ++i) {
    cumulative += distribution[i].second;
    if (u < cumulative) {
      chosen = i;
      break;
    }
  }
  const auto [token, prob] = distribution[chosen];
  return {token, std::log(prob), raw[token].item<double>()};
}

SamplingSettings sampling_settings(const std::vector<const SamplingParams*>& params,
                                   const std::vector<SequenceRng*>& rngs) {
  SamplingSettings s;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const SamplingParams& p = *params[i];
    s.temperature.push_back(p.temperature);
    s.top_k.push_back(p.top_k);
    s.top_p.push_back(p.top_p);
    s.min_p.push_back(p.min_p);
    s.uniform.push_back(p.temperature > 0 ? rngs[i]->uniform() : 0.0);
  }
  return s;
}

std::vector<SampledToken> sample_tokens(const at::Tensor& logits,
                                        const std::vector<std::int64_t>& rows,
                                        const std::vector<const SamplingParams*>& params,
                                        const std::vector<SequenceRng*>& rngs) {
  std::vector<SampledToken> out;
  if (!logits.is_cuda() || !kernels::built_with_cuda()) {
    const at::Tensor cpu = logits.to(at::kCPU);
    for (std::size_t i = 0; i < rows.size(); ++i)
      out.push_back(sample_token(cpu[rows[i]], *params[i], *rngs[i]));
    return out;
  }
  // Per-row settings gathered on the host and sent as one tensor each (element-wise tensor writes
  // cost an ATen call apiece, milliseconds for a batch of hundreds).
  const std::size_t n = rows.size();
  const SamplingSettings s = sampling_settings(params, rngs);
  const kernels::SamplingBatch b{at::tensor(s.temperature), at::tensor(s.top_k),
                                 at::tensor(s.top_p),       at::tensor(s.min_p),
                                 at::tensor(s.uniform),     at::tensor(rows, at::kLong)};
  const kernels::SampledTokens got = kernels::sample_cuda(logits.contiguous(), b);
  const at::Tensor token = got.token.to(at::kCPU).contiguous();
  const at::Tensor logprob = got.logprob.to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor raw = got.raw_logprob.to(at::kCPU, at::kDouble).contiguous();
  for (std::size_t i = 0; i < n; ++i)
    out.push_back({token.data_ptr<std::int64_t>()[i], logprob.data_ptr<double>()[i],
                   raw.data_ptr<double>()[i]});
  return out;
}

}  // namespace ponder::engine
