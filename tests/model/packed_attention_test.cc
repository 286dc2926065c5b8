// Packed causal attention against an explicit per-sequence softmax(q k^T) v in FP64 (outputs and
// gradients), and the length grouping's padding bound.
#include "model/packed_attention.h"

#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <limits>
#include <vector>

#include "core/error.h"

namespace ponder::model {
namespace {

at::Tensor offsets(const std::vector<std::int64_t>& lengths) {
  std::vector<std::int64_t> cu = {0};
  for (const std::int64_t n : lengths) cu.push_back(cu.back() + n);
  return at::tensor(cu, at::kLong);
}

// One matmul-softmax-matmul per sequence, with an explicit upper-triangular -inf mask.
at::Tensor reference_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const std::vector<std::int64_t>& lengths, double scale) {
  std::vector<at::Tensor> outputs;
  std::int64_t start = 0;
  for (const std::int64_t n : lengths) {
    const auto heads_first = [&](const at::Tensor& t) {
      return t.narrow(0, start, n).transpose(0, 1);
    };
    const at::Tensor scores = at::matmul(heads_first(q), heads_first(k).transpose(1, 2)) * scale;
    const at::Tensor future = at::ones({n, n}, at::kBool).triu(1);
    const at::Tensor p =
        scores.masked_fill(future, -std::numeric_limits<double>::infinity()).softmax(-1);
    outputs.push_back(at::matmul(p, heads_first(v)).transpose(0, 1));
    start += n;
  }
  return at::cat(outputs);
}

// Three query heads over three key/value heads, and over one shared by all (grouped-query).
class PackedAttentionHeads : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(PackedAttentionHeads, MatchesPerSequenceSoftmaxAttentionAndItsGradients) {
  const std::vector<std::int64_t> lengths = {5, 0, 17, 3, 17, 9, 1, 12};
  const std::int64_t kv_heads = GetParam();
  std::int64_t tokens = 0;
  for (const std::int64_t n : lengths) tokens += n;
  at::manual_seed(3);
  const auto leaf = [&](std::int64_t heads, std::int64_t d) {
    return at::randn({tokens, heads, d}, at::kDouble).requires_grad_(true);
  };
  const at::Tensor q = leaf(3, 6), k = leaf(kv_heads, 6), v = leaf(kv_heads, 4);
  const at::Tensor weight = at::randn({tokens, 3, 4}, at::kDouble);
  const double scale = 0.37;
  const PackedSequences packed = PackedSequences::from(offsets(lengths), at::kCPU);
  EXPECT_GT(packed.groups.size(), 1u);
  const at::Tensor out = packed_causal_attention(q, k, v, packed, scale);
  const at::Tensor expected =
      reference_attention(q, k.repeat_interleave(3 / kv_heads, 1),
                          v.repeat_interleave(3 / kv_heads, 1), lengths, scale);
  EXPECT_LT((out - expected).abs().max().item<double>(), 1e-12);
  const auto grads = [&](const at::Tensor& o) {
    return torch::autograd::grad({(o * weight).sum()}, {q, k, v});
  };
  const auto got = grads(out), want = grads(expected);
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_LT((got[i] - want[i]).abs().max().item<double>(), 1e-12) << "gradient " << i;
}

INSTANTIATE_TEST_SUITE_P(KeyValueHeads, PackedAttentionHeads, ::testing::Values(3, 1));

TEST(PackedAttention, GroupsPadAtMostAQuarterAndKeepEqualRunsUncopied) {
  const std::vector<std::int64_t> lengths = {100, 3, 3, 98, 50, 0, 60, 1, 80};
  const PackedSequences packed = PackedSequences::from(offsets(lengths), at::kCPU);
  std::int64_t real = 0;
  for (const auto& g : packed.groups) {
    const std::int64_t kept = g.keep.defined() ? g.keep.numel() : g.sequences * g.max_length;
    EXPECT_LE(4 * g.sequences * g.max_length, 5 * kept) << "group of " << g.sequences;
    real += kept;
  }
  EXPECT_EQ(real, 395);
  EXPECT_TRUE(packed.restore.defined());

  const PackedSequences equal = PackedSequences::from(offsets({8, 8, 8}), at::kCPU);
  ASSERT_EQ(equal.groups.size(), 1u);
  EXPECT_EQ(equal.groups[0].sequences, 3);
  EXPECT_FALSE(equal.groups[0].gather.defined());
  EXPECT_FALSE(equal.restore.defined());
}

TEST(PackedAttention, RejectsOffsetsThatGoBackwards) {
  EXPECT_THROW(PackedSequences::from(at::tensor(std::vector<std::int64_t>{0, 5, 3}), at::kCPU),
               Error);
  const PackedSequences packed = PackedSequences::from(offsets({4}), at::kCPU);
  const at::Tensor q = at::randn({5, 1, 2});
  EXPECT_THROW(packed_causal_attention(q, q, q, packed, 1.0), Error);
}

}  // namespace
}  // namespace ponder::model
