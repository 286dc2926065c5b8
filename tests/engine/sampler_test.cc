#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"

namespace ponder::engine {
namespace {

// Exact filtered distribution computed independently of the sampler, in the documented order.
std::map<std::int64_t, double> expected(const std::vector<double>& logits,
                                        const SamplingParams& p) {
  std::vector<std::pair<double, std::int64_t>> probs;
  double z = 0;
  std::vector<double> l32(logits.begin(), logits.end());
  for (auto& l : l32) l = static_cast<float>(l);  // the sampler sees float32 logits
  for (double l : l32) z += std::exp(l / p.temperature);
  for (std::size_t i = 0; i < l32.size(); ++i)
    probs.push_back({std::exp(l32[i] / p.temperature) / z, i});
  std::sort(probs.rbegin(), probs.rend());
  std::size_t keep = p.top_k > 0 ? std::min<std::size_t>(p.top_k, probs.size()) : probs.size();
  double cum = 0, kept_total = 0;
  for (std::size_t i = 0; i < keep; ++i) kept_total += probs[i].first;
  for (std::size_t i = 0; i < keep && p.top_p < 1; ++i)
    if ((cum += probs[i].first) >= p.top_p * kept_total) {
      keep = i + 1;
      break;
    }
  while (keep > 1 && probs[keep - 1].first < p.min_p * probs[0].first) --keep;
  double mass = 0;
  for (std::size_t i = 0; i < keep; ++i) mass += probs[i].first;
  std::map<std::int64_t, double> out;
  for (std::size_t i = 0; i < keep; ++i) out[probs[i].second] = probs[i].first / mass;
  return out;
}

// Pearson chi-square of 40,000 draws against the exact distribution; tokens outside it must
// never be drawn. 99.9% critical values for up to 11 degrees of freedom stay below 32.
void check_distribution(const SamplingParams& p) {
  const std::vector<double> logits = {2.0,  1.5,  1.2, 0.3, 0.0,  -0.4,
                                      -1.0, -2.0, 0.9, 1.1, -3.0, 0.5};
  const auto want = expected(logits, p);
  const at::Tensor row = at::tensor(std::vector<float>(logits.begin(), logits.end()));
  SequenceRng rng(p.seed, 0);
  std::map<std::int64_t, int> counts;
  constexpr int kDraws = 40000;
  for (int i = 0; i < kDraws; ++i) {
    const auto s = sample_token(row, p, rng);
    ASSERT_TRUE(want.count(s.token)) << "token " << s.token << " is outside the filtered set";
    ASSERT_NEAR(s.logprob, std::log(want.at(s.token)), 1e-9);
    ++counts[s.token];
  }
  double chi2 = 0;
  for (const auto& [token, prob] : want) {
    const double e = prob * kDraws;
    chi2 += (counts[token] - e) * (counts[token] - e) / e;
  }
  EXPECT_LT(chi2, 32.0) << "temperature " << p.temperature << " top_k " << p.top_k << " top_p "
                        << p.top_p << " min_p " << p.min_p;
}

TEST(Sampler, TemperatureMatchesSoftmax) { check_distribution({.temperature = 0.7, .seed = 1}); }
TEST(Sampler, TopKKeepsTheKMostLikely) {
  check_distribution({.temperature = 1.0, .top_k = 4, .seed = 2});
}
TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  check_distribution({.temperature = 1.0, .top_p = 0.6, .seed = 3});
}
TEST(Sampler, MinPDropsUnlikelyTokens) {
  check_distribution({.temperature = 1.3, .min_p = 0.2, .seed = 4});
}
TEST(Sampler, FiltersCompose) {
  check_distribution({.temperature = 0.9, .top_p = 0.9, .top_k = 6, .min_p = 0.05, .seed = 5});
}

TEST(Sampler, GreedyPicksArgmaxWithRawLogprob) {
  const at::Tensor row = at::tensor(std::vector<float>{0.1f, 3.0f, -1.0f});
  SequenceRng rng(0, 0);
  const auto s = sample_token(row, {.temperature = 0}, rng);
  EXPECT_EQ(s.token, 1);
  EXPECT_NEAR(s.raw_logprob, row.log_softmax(0)[1].item<double>(), 1e-7);
}

TEST(Sampler, SeedStreamsDependOnlyOnSeedAndSample) {
  SequenceRng a(7, 3), b(7, 3), c(7, 4);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.uniform(), b.uniform());
  EXPECT_NE(SequenceRng(7, 3).uniform(), c.uniform());
}

// A draw given back (a decode step launched ahead and dropped) is the next one taken, then the
// stream goes on as if it had never been taken: the same draws as a stream that never gave back.
TEST(Sampler, UnreadDrawComesBackOnceInOrder) {
  SequenceRng plain(7, 3), rewound(7, 3);
  const std::vector<double> expected = {plain.uniform(), plain.uniform(), plain.uniform()};
  EXPECT_EQ(rewound.uniform(), expected[0]);
  const double taken = rewound.uniform();
  rewound.unread(taken);
  EXPECT_THROW(rewound.unread(taken), Error) << "one draw at most is held";
  EXPECT_EQ(rewound.uniform(), expected[1]);
  EXPECT_EQ(rewound.uniform(), expected[2]);
}

}  // namespace
}  // namespace ponder::engine
