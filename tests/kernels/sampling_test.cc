// The GPU sampler against the CPU sampler (engine/sampler.h): greedy and top-k = 1 exactly; on
// tie-free logits the same draw from a sequence's seeded stream gives the same token under every
// filter; empirical frequencies match the CPU's filtered distribution, and with tied logits the
// stable-order semantics (ties by lower index). Token logprobs against an FP64 oracle.
#include "kernels/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "engine/sampler.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

constexpr std::int64_t kVocab = 129280;  // DeepSeek-V2/V3

const auto kCpu = at::TensorOptions().device(at::kCPU);

SamplingBatch batch_for(const std::vector<engine::SamplingParams>& params,
                        const std::vector<double>& uniform) {
  const auto n = static_cast<std::int64_t>(params.size());
  SamplingBatch b{
      at::empty({n}, kCpu.dtype(at::kFloat)),       at::empty({n}, kCpu.dtype(at::kLong)),
      at::empty({n}, kCpu.dtype(at::kFloat)),       at::empty({n}, kCpu.dtype(at::kFloat)),
      at::tensor(uniform, kCpu.dtype(at::kDouble)), {}};
  for (std::int64_t i = 0; i < n; ++i) {
    b.temperature[i] = params[i].temperature;
    b.top_k[i] = params[i].top_k;
    b.top_p[i] = params[i].top_p;
    b.min_p[i] = params[i].min_p;
  }
  return b;
}

engine::SamplingParams make(double temperature, std::int64_t top_k, double top_p, double min_p) {
  engine::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

// Model-like logits: a few strong candidates over a long tail.
at::Tensor random_logits(std::int64_t rows, std::int64_t vocab, at::ScalarType dtype) {
  at::Tensor l = at::randn({rows, vocab}, kCpu.dtype(at::kFloat)) * 2.5;
  l.narrow(1, 0, 64).add_(at::rand({rows, 64}) * 12);
  return l.index_select(1, at::randperm(vocab, kCpu.dtype(at::kLong))).to(dtype).to(at::kCUDA);
}

// Rows of distinct float16 logits (no ties, so every filter has one right answer): shuffled
// float16 values of magnitude up to 12, read from their bit patterns.
at::Tensor distinct_half_logits(std::int64_t rows, std::int64_t vocab) {
  const at::Tensor bits = at::arange(0, 0x4a00, kCpu.dtype(at::kShort));
  const at::Tensor values =
      at::cat({bits.view(at::kHalf), -bits.narrow(0, 1, 0x4a00 - 1).view(at::kHalf)});
  std::vector<at::Tensor> out;
  for (std::int64_t r = 0; r < rows; ++r)
    out.push_back(values.index_select(0, at::randperm(values.size(0), kCpu.dtype(at::kLong)))
                      .narrow(0, 0, vocab));
  return at::stack(out).to(at::kCUDA);
}

TEST(SampleCuda, GreedyAndTopKOneMatchCpuExactly) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const std::int64_t rows = 24;
    const at::Tensor logits = random_logits(rows, kVocab, dtype);
    std::vector<engine::SamplingParams> params;
    for (std::int64_t r = 0; r < rows; ++r) params.push_back(make(r % 2 ? 0.0 : 0.7, 1, 1, 0));
    const SampledTokens got =
        sample_cuda(logits, batch_for(params, std::vector<double>(rows, 0.5)));
    const at::Tensor cpu = logits.to(at::kCPU, at::kFloat), argmax = cpu.argmax(1);
    for (std::int64_t r = 0; r < rows; ++r) {
      engine::SequenceRng rng(1, r);
      const engine::SampledToken want = engine::sample_token(cpu[r], params[r], rng);
      const std::int64_t token = got.token[r].item<std::int64_t>();
      // The first maximum, as at::argmax; bfloat16 rows can hold tied maxima, of which the CPU's
      // unstable sort may put any first under top-k = 1, so its token need only tie with ours.
      EXPECT_EQ(token, argmax[r].item<std::int64_t>()) << c10::toString(dtype) << " row " << r;
      EXPECT_EQ(cpu[r][token].item<float>(), cpu[r][want.token].item<float>()) << "row " << r;
      if (dtype == at::kFloat) {
        EXPECT_EQ(token, want.token) << "row " << r;
      }
      EXPECT_NEAR(got.raw_logprob[r].item<float>(), want.raw_logprob, 1e-4) << "row " << r;
      EXPECT_EQ(got.logprob[r].item<float>(), 0.0f) << "row " << r;
    }
  }
}

TEST(SampleCuda, SameDrawGivesTheCpuTokenUnderEveryFilter) {
  PONDER_REQUIRE_GPU();
  const std::vector<engine::SamplingParams> settings = {
      make(1.0, 0, 1.0, 0.0),    make(0.8, 0, 1.0, 0.0),  make(1.0, 50, 1.0, 0.0),
      make(0.7, 0, 0.9, 0.0),    make(1.0, 0, 1.0, 0.05), make(0.9, 200, 0.95, 0.02),
      make(1.3, 1000, 0.8, 0.0), make(0.6, 0, 0.5, 0.1),  make(1.0, 0, 0.999, 0.0)};
  const std::int64_t rows = 16;
  for (const at::Tensor& logits :
       {random_logits(rows, kVocab, at::kFloat), distinct_half_logits(rows, 32000)}) {
    const at::Tensor cpu = logits.to(at::kCPU);
    const std::string dtype = c10::toString(logits.scalar_type());
    for (std::size_t s = 0; s < settings.size(); ++s) {
      std::vector<engine::SamplingParams> params(rows, settings[s]);
      std::vector<double> uniform;
      for (std::int64_t r = 0; r < rows; ++r)
        uniform.push_back(engine::SequenceRng(s, r).uniform());
      const SampledTokens got = sample_cuda(logits, batch_for(params, uniform));
      for (std::int64_t r = 0; r < rows; ++r) {
        engine::SequenceRng rng(s, r);  // the same stream: its first draw is uniform[r]
        const engine::SampledToken want = engine::sample_token(cpu[r], params[r], rng);
        const std::string what =
            dtype + " setting " + std::to_string(s) + " row " + std::to_string(r);
        EXPECT_EQ(got.token[r].item<std::int64_t>(), want.token) << what;
        EXPECT_NEAR(got.logprob[r].item<float>(), want.logprob, 1e-3) << what;
        EXPECT_NEAR(got.raw_logprob[r].item<float>(), want.raw_logprob, 1e-4) << what;
      }
    }
  }
}

// The filtered distribution in stable descending order (ties by lower index), the semantics the
// GPU sampler documents: engine/sampler.h's filters over at::sort(stable = true).
std::vector<double> stable_filtered(const at::Tensor& row, const engine::SamplingParams& p) {
  const at::Tensor probs = (row.to(at::kDouble) / p.temperature).softmax(-1);
  const auto [sorted, order] = probs.sort(/*stable=*/true, /*dim=*/-1, /*descending=*/true);
  std::int64_t keep = p.top_k > 0 ? std::min(p.top_k, row.numel()) : row.numel();
  double total = sorted.narrow(0, 0, keep).sum().item<double>(), cum = 0;
  for (std::int64_t i = 0; p.top_p < 1 && i < keep; ++i)
    if ((cum += sorted[i].item<double>()) >= p.top_p * total) keep = i + 1;
  while (keep > 1 && sorted[keep - 1].item<double>() < p.min_p * sorted[0].item<double>()) --keep;
  std::vector<double> dist(row.numel(), 0.0);
  const double mass = sorted.narrow(0, 0, keep).sum().item<double>();
  for (std::int64_t i = 0; i < keep; ++i)
    dist[order[i].item<std::int64_t>()] = sorted[i].item<double>() / mass;
  return dist;
}

// Empirical token frequencies of `draws` samples of one row (shared through row_of).
std::vector<double> frequencies(const at::Tensor& row, const engine::SamplingParams& p,
                                std::int64_t draws) {
  engine::SequenceRng rng(7, 0);
  std::vector<double> uniform(draws);
  for (double& u : uniform) u = rng.uniform();
  SamplingBatch b = batch_for(std::vector<engine::SamplingParams>(draws, p), uniform);
  b.row_of = at::zeros({draws}, kCpu.dtype(at::kLong));
  const at::Tensor tokens = sample_cuda(row.unsqueeze(0).to(at::kCUDA), b).token.to(at::kCPU);
  const at::Tensor counts = at::bincount(tokens, {}, row.numel()).to(at::kDouble) / draws;
  return {counts.data_ptr<double>(), counts.data_ptr<double>() + counts.numel()};
}

// Within 5 standard deviations of a binomial frequency; tokens outside the filter never appear.
void expect_frequencies(const std::vector<double>& got, const std::vector<double>& want,
                        std::int64_t draws, const std::string& what) {
  for (std::size_t t = 0; t < want.size(); ++t)
    EXPECT_NEAR(got[t], want[t], 5 * std::sqrt(want[t] * (1 - want[t]) / draws) + 1e-12)
        << what << " token " << t;
}

TEST(SampleCuda, TiedLogitsFollowStableOrder) {
  PONDER_REQUIRE_GPU();
  // Classes of equal bfloat16 logits (2, 1, 0.5, 0) of sizes 3, 5, 7, 15, shuffled: top-k and
  // top-p cut inside a class, keeping its lowest indices; every kept tie is equally likely.
  std::vector<float> values;
  for (const auto& [value, count] : {std::pair{2.f, 3}, {1.f, 5}, {0.5f, 7}, {0.f, 15}})
    values.insert(values.end(), count, value);
  const at::Tensor row =
      at::tensor(values).index_select(0, at::randperm(30, kCpu.dtype(at::kLong))).to(at::kBFloat16);
  const std::int64_t draws = 300000;
  for (const auto& p : {make(1.0, 0, 1.0, 0.0), make(1.0, 5, 1.0, 0.0), make(0.8, 0, 0.5, 0.0),
                        make(1.0, 11, 0.7, 0.3), make(1.0, 0, 1.0, 0.5)})
    expect_frequencies(frequencies(row, p, draws), stable_filtered(row, p), draws,
                       "top_k " + std::to_string(p.top_k) + " top_p " + std::to_string(p.top_p));
}

TEST(SampleCuda, FrequenciesMatchTheCpuFilteredDistribution) {
  PONDER_REQUIRE_GPU();
  const at::Tensor row = at::randn({40}, kCpu.dtype(at::kFloat)) * 1.5;
  const std::int64_t draws = 400000;
  for (const auto& p : {make(1.0, 0, 1.0, 0.0), make(0.9, 12, 0.9, 0.0), make(1.2, 0, 0.8, 0.05),
                        make(0.5, 0, 1.0, 0.2)}) {
    std::vector<double> want(40, 0.0);
    for (const auto& [token, prob] : engine::filtered_distribution(row, p)) want[token] = prob;
    expect_frequencies(frequencies(row, p, draws), want, draws,
                       "top_k " + std::to_string(p.top_k) + " top_p " + std::to_string(p.top_p));
  }
}

TEST(SampleCuda, RejectsMismatchedBatches) {
  PONDER_REQUIRE_GPU();
  const at::Tensor logits = at::randn({3, 10}, at::TensorOptions().device(at::kCUDA));
  const SamplingBatch two = batch_for({make(1, 0, 1, 0), make(1, 0, 1, 0)}, {0.1, 0.2});
  EXPECT_THROW(sample_cuda(logits, two), std::exception);
}

TEST(TokenLogprobsReference, MatchesFullLogSoftmaxInFp64) {
  const at::Tensor h = at::randn({5, 16}), w = at::randn({20000, 16});
  const at::Tensor targets = at::randint(0, 20000, {5}, kCpu.dtype(at::kLong));
  const at::Tensor want = at::log_softmax(at::mm(h.to(at::kDouble), w.to(at::kDouble).t()), -1)
                              .gather(1, targets.unsqueeze(1))
                              .squeeze(1);
  EXPECT_LT(
      (token_logprobs_reference(h, w, targets).to(at::kDouble) - want).abs().max().item<double>(),
      1e-4);
}

TEST(TokenLogprobsCuda, MatchesFp64OracleAcrossChunks) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kBFloat16, at::kFloat})
    for (const std::int64_t chunk : {0, 1000, 8192}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor h = at::randn({203, 256}, opts), w = at::randn({kVocab, 256}, opts) * 0.2;
      at::Tensor targets = at::randint(0, kVocab, {203}, opts.dtype(at::kLong));
      targets[0] = 0;
      targets[1] = kVocab - 1;
      const at::Tensor want = at::log_softmax(at::mm(h.to(at::kDouble), w.to(at::kDouble).t()), -1)
                                  .gather(1, targets.unsqueeze(1))
                                  .squeeze(1);
      const at::Tensor got = token_logprobs_cuda(h, w, targets, chunk);
      EXPECT_LT((got.to(at::kDouble) - want).abs().max().item<double>(), 1e-3)
          << c10::toString(dtype) << " chunk " << chunk;
    }
}

}  // namespace
}  // namespace ponder::kernels
