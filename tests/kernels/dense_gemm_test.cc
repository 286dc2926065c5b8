// kernels::dense_gemm: every GEMM it runs against an FP32 GEMM of the same BF16 inputs
// (independent oracle) and against at::linear on the V2-Lite decode step's linear shapes at odd
// and even row counts; where a GEMM does not take a shape, it says so and throws.
#include "kernels/dense_gemm.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

struct Shape {
  std::int64_t n, k;
};

// The decode step's stacked q + kv_a, o_proj, shared experts' gate+up and down, dense MLP's.
const std::vector<Shape> kDecodeShapes = {{3648, 2048}, {2048, 2048},  {5632, 2048},
                                          {2048, 2816}, {21888, 2048}, {2048, 10944}};

TEST(DenseGemmCuda, EveryGemmMatchesFp32AndLinearOnDecodeShapes) {
  PONDER_REQUIRE_GPU();
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  const bool hopper = compute_capability() == 90;
  for (const Shape& s : kDecodeShapes)
    for (const std::int64_t rows : {1, 7, 64, 100, 256, 257}) {
      const at::Tensor x = at::randn({rows, s.k}, bf16), w = at::randn({s.n, s.k}, bf16) * 0.05;
      // Exact products of the BF16 inputs summed in FP32 (TF32 is off in ATen by default).
      const at::Tensor fp32 = at::linear(x.to(at::kFloat), w.to(at::kFloat));
      const at::Tensor linear = at::linear(x, w);
      for (const DenseGemm g :
           {DenseGemm::kCublas, DenseGemm::kCublasLt, DenseGemm::kWgmma, DenseGemm::kWgmmaLarge}) {
        const bool wgmma = g == DenseGemm::kWgmma || g == DenseGemm::kWgmmaLarge;
        const std::int64_t tile = g == DenseGemm::kWgmmaLarge ? 256 : 128;
        const std::string what = dense_gemm_name(g) + " rows " + std::to_string(rows) + " n " +
                                 std::to_string(s.n) + " k " + std::to_string(s.k);
        ASSERT_EQ(dense_gemm_supported(x, w, g), !wgmma || (hopper && s.n % tile == 0)) << what;
        if (!dense_gemm_supported(x, w, g)) {
          EXPECT_THROW(dense_gemm(x, w, g), Error) << what;
          continue;
        }
        const at::Tensor got = dense_gemm(x, w, g);
        ASSERT_EQ(got.sizes(), linear.sizes()) << what;
        ASSERT_EQ(got.scalar_type(), at::kBFloat16) << what;
        // BF16 output: one rounding (relative 2^-9 at most per element) after FP32 sums.
        EXPECT_LT(testing::relative_error(got, fp32), 4e-3) << what;
        EXPECT_LT(testing::relative_error(got, linear), 4e-3) << what;
      }
    }
}

}  // namespace
}  // namespace ponder::kernels
