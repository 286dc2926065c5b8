// kernels::grouped_gemm: the ATen reference against an FP64 oracle that multiplies each row by
// its group's weights found by position (no per-group loop), and the CUDA kernel against both on
// the device: plain and SwiGLU, with empty groups, one-row groups and a group longer than one
// 64-row pass over its weights.
#include "kernels/moe_gemm.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

struct Problem {
  at::Tensor x, w, ends;
};

Problem make_problem(const at::Device& device, at::ScalarType dtype, std::int64_t n,
                     std::int64_t k) {
  const std::vector<std::int32_t> sizes = {3, 0, 1, 70, 24, 0, 64, 5};
  std::vector<std::int32_t> ends;
  std::int32_t total = 0;
  for (const std::int32_t s : sizes) ends.push_back(total += s);
  const auto opts = at::TensorOptions(dtype).device(device);
  const auto groups = static_cast<std::int64_t>(sizes.size());
  return {at::randn({total, k}).to(opts), (at::randn({groups, n, k}) * 0.1).to(opts),
          at::tensor(ends, at::kInt).to(device)};
}

// [rows, n] (SwiGLU: [rows, n / 2]) in FP64.
at::Tensor oracle(const Problem& p, bool swiglu) {
  const at::Tensor x = p.x.to(at::kCPU, at::kDouble), w = p.w.to(at::kCPU, at::kDouble);
  const at::Tensor group = at::searchsorted(p.ends.to(at::kCPU, at::kLong),
                                            at::arange(x.size(0), at::kLong), false, true);
  const at::Tensor out = at::bmm(w.index_select(0, group), x.unsqueeze(2)).squeeze(2);
  if (!swiglu) return out;
  const std::int64_t half = out.size(1) / 2;
  const at::Tensor gate = out.narrow(1, 0, half);
  return gate / (1 + at::exp(-gate)) * out.narrow(1, half, half);
}

TEST(GroupedGemmReference, MatchesFp64Oracle) {
  const Problem p = make_problem(at::kCPU, at::kFloat, 256, 96);
  for (const bool swiglu : {false, true}) {
    const at::Tensor got = grouped_gemm_reference(p.x, p.w, p.ends, swiglu);
    EXPECT_LT(testing::relative_error(got, oracle(p, swiglu)), 1e-5) << "swiglu " << swiglu;
  }
}

TEST(GroupedGemmCuda, MatchesReferenceAndOracle) {
  PONDER_REQUIRE_GPU();
  const Problem p = make_problem(at::kCUDA, at::kBFloat16, 256, 192);
  ASSERT_TRUE(grouped_gemm_supported(p.x, p.w));
  for (const bool swiglu : {false, true}) {
    const at::Tensor got = grouped_gemm_cuda(p.x, p.w, p.ends, swiglu);
    const at::Tensor want = grouped_gemm_reference(p.x, p.w, p.ends, swiglu);
    EXPECT_EQ(got.sizes(), want.sizes());
    // Both sum exact BF16 products in FP32 and round once: they differ by the order of the sums.
    EXPECT_LT(testing::relative_error(got, want), 4e-3) << "swiglu " << swiglu;
    EXPECT_LT(testing::relative_error(got, oracle(p, swiglu)), 1e-2) << "swiglu " << swiglu;
  }
}

TEST(GroupedGemmCuda, RejectsShapesItDoesNotTile) {
  PONDER_REQUIRE_GPU();
  const Problem p = make_problem(at::kCUDA, at::kBFloat16, 256, 100);
  EXPECT_FALSE(grouped_gemm_supported(p.x, p.w));
  EXPECT_THROW(grouped_gemm_cuda(p.x, p.w, p.ends, false), Error);
  const Problem q = make_problem(at::kCUDA, at::kBFloat16, 256, 128);
  EXPECT_THROW(grouped_gemm_cuda(q.x, q.w, q.ends.to(at::kLong), false), Error);
}

}  // namespace
}  // namespace ponder::kernels
