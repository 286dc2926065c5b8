// The MoE permutation kernels against their ATen references (stable torch sort, index ops) on the
// GPU: sorted order, its inverse, the expert ends and the gathered rows exactly; the weighted
// combine to BF16/FP32 rounding, and with the shared experts' add, the residual add and the next
// norm fused in bitwise equal to the chain of kernels it replaces. The references against
// hand-computed values on the CPU.
#include "kernels/moe_permute.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/moe_permute_kernel.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

at::Tensor longs(const std::vector<std::int64_t>& v) { return at::tensor(v, at::kLong); }

TEST(MoePermuteReference, HandComputed) {
  // pairs (t, j): (0,0)->2 (0,1)->0 (1,0)->0 (1,1)->1
  const at::Tensor experts = longs({2, 0, 0, 1}).view({2, 2});
  const at::Tensor x = at::tensor(std::vector<float>{10, 11, 20, 21}).view({2, 2});
  const ExpertPermutation p = permute_by_expert_reference(x, experts, 4);
  EXPECT_TRUE(p.order.equal(longs({1, 2, 3, 0})));
  EXPECT_TRUE(p.position.equal(longs({3, 0, 1, 2})));
  EXPECT_TRUE(p.ends.equal(at::tensor(std::vector<std::int32_t>{2, 3, 4, 4})));
  EXPECT_TRUE(
      p.rows.equal(at::tensor(std::vector<float>{10, 11, 20, 21, 20, 21, 10, 11}).view({4, 2})));
}

TEST(MoeCombineReference, HandComputed) {
  const at::Tensor y = at::tensor(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}).view({4, 2});
  const at::Tensor weights = at::tensor(std::vector<float>{0.5, 2, 1, -1}).view({2, 2});
  // token 0: 0.5 y[1] + 2 y[0]; token 1: y[3] - y[2]
  const at::Tensor got = combine_experts_reference(y, longs({1, 0, 3, 2}), weights);
  EXPECT_TRUE(got.equal(at::tensor(std::vector<float>{3.5, 6, 2, 2}).view({2, 2})));
}

// Expert ids [tokens, k]: distinct per token (top-k of random scores) or all on `hot`.
at::Tensor routed(std::int64_t tokens, std::int64_t k, std::int64_t experts, bool distinct) {
  if (!distinct) return at::full({tokens, k}, experts / 2, at::kLong);
  return std::get<1>(at::rand({tokens, experts}).topk(k, -1));
}

TEST(MoePermuteCuda, MatchesReference) {
  PONDER_REQUIRE_GPU();
  at::manual_seed(3);
  struct Case {
    std::int64_t tokens, k, experts, hidden;
    at::ScalarType dtype;
    bool distinct;
  };
  // The one-launch ranked sort up to kRankedPairs pairs (the decode shapes 256 x 6 of 64 and
  // 256 x 8 of 256, 1,024 experts, everything on one expert), the count/scan/scatter sort above
  // (one pair past the limit; the scan runs several 1,024-entry chunks at 4,096 x 8 over 256
  // experts); 16-byte, 4-byte and 2-byte rows.
  static_assert(kRankedPairs == 2048);
  for (const Case c :
       {Case{1, 1, 4, 64, at::kBFloat16, true}, Case{7, 4, 16, 256, at::kFloat, true},
        Case{256, 6, 64, 2048, at::kBFloat16, true}, Case{256, 8, 256, 64, at::kBFloat16, true},
        Case{100, 4, 1024, 64, at::kBFloat16, true}, Case{341, 6, 64, 64, at::kBFloat16, false},
        Case{2049, 1, 64, 64, at::kBFloat16, true}, Case{4096, 8, 256, 128, at::kBFloat16, true},
        Case{512, 8, 256, 64, at::kBFloat16, true}, Case{300, 6, 64, 3, at::kFloat, true},
        Case{300, 6, 64, 3, at::kBFloat16, true}, Case{500, 6, 64, 64, at::kBFloat16, false},
        Case{1000, 6, 64, 64, at::kBFloat16, false}, Case{0, 6, 64, 64, at::kBFloat16, true}}) {
    const at::Tensor experts = routed(c.tokens, c.k, c.experts, c.distinct).to(at::kCUDA);
    const at::Tensor x = at::randn({c.tokens, c.hidden}).to(at::kCUDA, c.dtype);
    const ExpertPermutation want = permute_by_expert_reference(x, experts, c.experts);
    const ExpertPermutation got = permute_by_expert_cuda(x, experts, c.experts);
    const std::string what = std::to_string(c.tokens) + " tokens x " + std::to_string(c.k) +
                             " of " + std::to_string(c.experts) + ", hidden " +
                             std::to_string(c.hidden);
    EXPECT_TRUE(got.order.equal(want.order)) << what;
    EXPECT_TRUE(got.position.equal(want.position)) << what;
    EXPECT_TRUE(got.ends.equal(want.ends)) << what;
    EXPECT_TRUE(got.rows.equal(want.rows)) << what;
  }
}

TEST(MoeCombineCuda, MatchesReference) {
  PONDER_REQUIRE_GPU();
  at::manual_seed(4);
  for (const auto dtype : {at::kBFloat16, at::kFloat}) {
    for (const std::int64_t cols : {2048, 3}) {
      const std::int64_t tokens = 300, k = 6;
      const at::Tensor y = at::randn({tokens * k, cols}).to(at::kCUDA, dtype);
      const at::Tensor position = at::randperm(tokens * k, at::kLong).to(at::kCUDA);
      const at::Tensor weights = at::rand({tokens, k}).to(at::kCUDA);
      const at::Tensor want = combine_experts_reference(y, position, weights);
      const at::Tensor got = combine_experts_cuda(y, position, weights);
      // the same products; only the order of the FP32 sum may differ from ATen's reduction, which
      // moves a BF16 output by one rounding step at most, and rarely
      const bool bf16 = dtype == at::kBFloat16;
      EXPECT_LT(testing::relative_error(got, want), bf16 ? 2e-3 : 1e-6) << cols << " cols";
      if (bf16) {
        EXPECT_GT(testing::fraction_equal(got, want), 0.95) << cols << " cols";
      }
    }
  }
}

TEST(MoeCombineReference, AddsSharedThenResidualAndNorms) {
  const at::Tensor y = at::tensor(std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}).view({4, 2});
  const at::Tensor weights = at::tensor(std::vector<float>{0.5, 2, 1, -1}).view({2, 2});
  const at::Tensor shared = at::tensor(std::vector<float>{1, -2, 0, 1}).view({2, 2});
  const at::Tensor x = at::tensor(std::vector<float>{-0.5, 0, 1, 0}).view({2, 2});
  const at::Tensor norm = at::tensor(std::vector<float>{1, 2});
  const at::Tensor position = longs({1, 0, 3, 2});
  // routed {3.5, 6}, {2, 2} as above; + shared {4.5, 4}, {2, 3}; + x {4, 4}, {3, 3}
  EXPECT_TRUE(combine_experts_reference(y, position, weights, shared)
                  .equal(at::tensor(std::vector<float>{4.5, 4, 2, 3}).view({2, 2})));
  const AddRmsNorm got =
      combine_experts_add_rms_norm_reference(y, position, weights, shared, x, norm, 0.0);
  EXPECT_TRUE(got.sum.equal(at::tensor(std::vector<float>{4, 4, 3, 3}).view({2, 2})));
  // each row's RMS equals its entries: normed = {1, 2} per row
  EXPECT_TRUE(got.normed.equal(at::tensor(std::vector<float>{1, 2, 1, 2}).view({2, 2})));
}

// The fused kernels against the chain they replace: the combine kernel, ATen's add of the shared
// experts' output, and the residual add + RMSNorm kernel. Same roundings, same reduction: equal.
TEST(MoeCombineCuda, FusedAddsEqualTheUnfusedChain) {
  PONDER_REQUIRE_GPU();
  at::manual_seed(5);
  for (const auto dtype : {at::kBFloat16, at::kFloat}) {
    for (const std::int64_t cols : {2048, 3, 4096 + 8}) {
      for (const bool with_shared : {true, false}) {
        const std::int64_t tokens = 300, k = 6;
        const auto on = at::TensorOptions().device(at::kCUDA);
        const at::Tensor y = at::randn({tokens * k, cols}, on).to(dtype);
        const at::Tensor position = at::randperm(tokens * k, on.dtype(at::kLong));
        const at::Tensor weights = at::rand({tokens, k}, on);
        const std::optional<at::Tensor> shared =
            with_shared ? std::optional(at::randn({tokens, cols}, on).to(dtype)) : std::nullopt;
        const at::Tensor x = at::randn({tokens, cols}, on).to(dtype) * 4;
        const at::Tensor norm = at::rand({cols}, on).to(dtype) + 0.5;
        const std::string what = c10::toString(dtype) + std::string(", ") + std::to_string(cols) +
                                 " cols" + (with_shared ? ", shared" : "");
        const at::Tensor routed = combine_experts_cuda(y, position, weights);
        const at::Tensor ffn = with_shared ? routed + *shared : routed;
        EXPECT_TRUE(combine_experts_cuda(y, position, weights, shared).equal(ffn)) << what;
        const AddRmsNorm want = add_rms_norm_cuda(x, ffn, norm, 1e-6);
        const AddRmsNorm got =
            combine_experts_add_rms_norm_cuda(y, position, weights, shared, x, norm, 1e-6);
        EXPECT_TRUE(got.sum.equal(want.sum)) << what;
        EXPECT_TRUE(got.normed.equal(want.normed)) << what;
        // and near the ATen reference chain (its sums of k products and squares in other orders)
        const AddRmsNorm ref =
            combine_experts_add_rms_norm_reference(y, position, weights, shared, x, norm, 1e-6);
        const double tolerance = dtype == at::kBFloat16 ? 2e-2 : 1e-5;
        EXPECT_LT(testing::relative_error(got.sum, ref.sum), tolerance) << what;
        EXPECT_LT(testing::relative_error(got.normed, ref.normed), tolerance) << what;
      }
    }
  }
}

TEST(MoeCombineCuda, FusedNormOnNoTokensAndBadShapes) {
  PONDER_REQUIRE_GPU();
  const auto on = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor weights = at::rand({0, 6}, on.dtype(at::kFloat));
  const at::Tensor position = at::zeros({0}, on.dtype(at::kLong));
  const AddRmsNorm empty = combine_experts_add_rms_norm_cuda(
      at::zeros({0, 64}, on), position, weights, at::zeros({0, 64}, on), at::zeros({0, 64}, on),
      at::ones({64}, on), 1e-6);
  EXPECT_EQ(empty.normed.sizes(), (std::vector<std::int64_t>{0, 64}));
  const at::Tensor y = at::randn({12, 64}, on), w = at::rand({2, 6}, on.dtype(at::kFloat));
  const at::Tensor pos = at::randperm(12, on.dtype(at::kLong)), x = at::randn({2, 64}, on);
  EXPECT_THROW(combine_experts_cuda(y, pos, w, at::randn({2, 32}, on)), Error);
  EXPECT_THROW(combine_experts_add_rms_norm_cuda(y, pos, w, std::nullopt, x.to(at::kFloat),
                                                 at::ones({64}, on), 1e-6),
               Error);
  EXPECT_THROW(
      combine_experts_add_rms_norm_cuda(y, pos, w, std::nullopt, x, at::ones({32}, on), 1e-6),
      Error);
  // the dispatcher takes the chain for inputs the kernel does not take
  const at::Tensor x32 = x.to(at::kFloat);
  const AddRmsNorm chain =
      combine_experts_add_rms_norm(y, pos, w, std::nullopt, x32, at::ones({64}, on), 1e-6);
  EXPECT_EQ(chain.sum.scalar_type(), at::kFloat);
}

TEST(MoePermuteCuda, RejectsWhatItCannotSort) {
  PONDER_REQUIRE_GPU();
  const at::Tensor x = at::randn({4, 8}).to(at::kCUDA);
  EXPECT_THROW(permute_by_expert_cuda(x, at::zeros({4, 2}, at::kInt).to(at::kCUDA), 4), Error);
  EXPECT_THROW(permute_by_expert_cuda(x, at::zeros({4, 2}, at::kLong).to(at::kCUDA), 2000), Error);
  EXPECT_THROW(permute_by_expert_cuda(x, at::zeros({3, 2}, at::kLong).to(at::kCUDA), 4), Error);
}

}  // namespace
}  // namespace ponder::kernels
