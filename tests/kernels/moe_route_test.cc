// The fused MoE routing kernel against its ATen reference (torch softmax/sigmoid, top-k, masks)
// on the GPU for DeepSeek V2-Lite (softmax, greedy), V2 (softmax, groups by their best expert)
// and V3 (sigmoid + bias, groups by their best two) routing over near-tied logits: the chosen
// experts in order exactly, weights and scores to FP32 rounding. Exact ties go to the lower
// expert (hand-computed); the BF16 router GEMM against FP32 logits.
#include "kernels/moe_route.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

using testing::relative_error;

// Logits [T, E] whose odd experts sit 1e-3 to 2e-3 from the even expert before them: near ties
// that FP32 affinities still order (their gaps are ~1e4 times the rounding of a score).
at::Tensor near_tied_logits(std::int64_t tokens, std::int64_t experts) {
  const at::Tensor even = at::randn({tokens, experts / 2, 1});
  const at::Tensor gap = (at::rand({tokens, experts / 2, 1}) + 1) * 1e-3 *
                         at::where(at::rand({tokens, experts / 2, 1}) < 0.5, -1.0, 1.0);
  return at::cat({even, even + gap}, -1).reshape({tokens, experts});
}

struct Case {
  std::string name;
  std::int64_t experts;
  RouteOptions options;
};

std::vector<Case> cases() {
  using enum RouteScoring;
  using enum RouteGroups;
  return {
      {"V2-Lite softmax greedy", 64, {kSoftmax, kNone, 1, 1, 6, false, 1.0}},
      {"softmax greedy normalised", 16, {kSoftmax, kNone, 1, 1, 2, true, 1.5}},
      {"V2 softmax group max", 64, {kSoftmax, kMax, 8, 3, 6, false, 16.0}},
      {"softmax group max normalised", 16, {kSoftmax, kMax, 4, 2, 2, true, 1.0}},
      {"V3 sigmoid noaux_tc", 256, {kSigmoid, kTopTwoSum, 8, 4, 8, true, 2.5}},
      {"sigmoid noaux_tc 64", 64, {kSigmoid, kTopTwoSum, 8, 4, 6, true, 1.0}},
      {"sigmoid one group", 16, {kSigmoid, kTopTwoSum, 1, 1, 2, false, 1.0}},
      {"sigmoid greedy 256", 256, {kSigmoid, kNone, 1, 1, 8, true, 2.5}},
  };
}

TEST(MoeRouteCuda, MatchesReference) {
  PONDER_REQUIRE_GPU();
  at::manual_seed(5);
  for (const Case& c : cases()) {
    for (const std::int64_t tokens : {1, 7, 256, 4096}) {
      const at::Tensor logits = near_tied_logits(tokens, c.experts).to(at::kCUDA);
      const at::Tensor bias = (at::randn({c.experts}) * 0.1).to(at::kCUDA);
      const ExpertRouting want = route_experts_reference(logits, bias, c.options);
      const ExpertRouting got = route_experts_cuda(logits, bias, c.options);
      const std::string what = c.name + ", " + std::to_string(tokens) + " tokens";
      ASSERT_EQ(got.experts.sizes(), want.experts.sizes()) << what;
      EXPECT_TRUE(got.experts.equal(want.experts))
          << what << ": " << got.experts.ne(want.experts).sum().item<std::int64_t>()
          << " choices differ";
      EXPECT_TRUE(at::allclose(got.weights, want.weights, 1e-5, 1e-6)) << what;
      EXPECT_LT(relative_error(got.scores, want.scores), 2e-6) << what;
      EXPECT_TRUE(route_experts(logits, bias, c.options).experts.equal(got.experts)) << what;
    }
  }
}

TEST(MoeRouteCuda, ExactTiesGoToTheLowerExpert) {
  PONDER_REQUIRE_GPU();
  // 16 equal logits; V3-style groups of 4 with 2 kept: groups 0 and 1, then experts 0..2.
  const at::Tensor logits = at::zeros({3, 16}, at::kCUDA);
  const RouteOptions greedy{RouteScoring::kSoftmax, RouteGroups::kNone, 1, 1, 3, false, 2.0};
  const ExpertRouting g = route_experts_cuda(logits, std::nullopt, greedy);
  EXPECT_TRUE(g.experts.cpu().equal(at::arange(3, at::kLong).repeat({3, 1})));
  EXPECT_TRUE(g.weights.cpu().equal(at::full({3, 3}, 2.0f / 16)));
  // expert 9 above the others: its group 2 first, then group 0 by the tie rule
  logits[1][9] = 1.0;
  const RouteOptions v3{RouteScoring::kSigmoid, RouteGroups::kTopTwoSum, 4, 2, 3, true, 1.0};
  const ExpertRouting v = route_experts_cuda(logits, std::nullopt, v3);
  const std::vector<std::int64_t> want{0, 1, 2, 9, 0, 1, 0, 1, 2};
  EXPECT_TRUE(v.experts.cpu().equal(at::tensor(want).view({3, 3})));
  const float high = 1 / (1 + std::exp(-1.0f));
  EXPECT_TRUE(at::allclose(v.weights[1].cpu(),
                           at::tensor(std::vector<float>{high, 0.5f, 0.5f}) / (high + 1.0f)));
}

TEST(MoeRouteCuda, RejectsShapesItDoesNotTake) {
  PONDER_REQUIRE_GPU();
  const at::Tensor logits = at::zeros({2, 300}, at::kCUDA);
  const RouteOptions o{RouteScoring::kSoftmax, RouteGroups::kNone, 1, 1, 2, false, 1.0};
  EXPECT_THROW(route_experts_cuda(logits, std::nullopt, o), Error);
  // route_experts falls back to the reference there
  EXPECT_EQ(route_experts(logits, std::nullopt, o).experts.size(1), 2);
  const RouteOptions uneven{RouteScoring::kSigmoid, RouteGroups::kTopTwoSum, 3, 1, 2, true, 1.0};
  EXPECT_THROW(route_experts_cuda(at::zeros({2, 16}, at::kCUDA), std::nullopt, uneven), Error);
}

TEST(MoeRouteCuda, Bf16RouterGemmMatchesFp32) {
  PONDER_REQUIRE_GPU();
  at::manual_seed(6);
  for (const std::int64_t tokens : {1, 256}) {
    const at::Tensor x = at::randn({tokens, 2048}).to(at::kCUDA, at::kBFloat16);
    const at::Tensor w = (at::randn({64, 2048}) * 0.05).to(at::kCUDA, at::kBFloat16);
    const at::Tensor got = router_logits(x, w);
    EXPECT_EQ(got.scalar_type(), at::kFloat);
    const at::Tensor want = at::linear(x.cpu().to(at::kDouble), w.cpu().to(at::kDouble));
    const double error = relative_error(got, want);
    const double fp32_error = relative_error(at::linear(x.to(at::kFloat), w.to(at::kFloat)), want);
    // FP32 accumulation on the tensor cores: ~2e-6 on the H200 (its adds truncate); logits
    // rounded to BF16 or accumulated in BF16 would be off by ~1e-3.
    EXPECT_LT(error, 1e-5) << tokens << " tokens";
    std::printf(
        "router logits, %lld tokens: relative error %.2e (BF16 GEMM, FP32 output), %.2e "
        "(FP32 GEMM)\n",
        static_cast<long long>(tokens), error, fp32_error);
  }
}

}  // namespace
}  // namespace ponder::kernels
