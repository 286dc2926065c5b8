// Kernel vs reference: the CPU reference is checked against hand-computed values everywhere;
// the CUDA kernels (plain and fused with the residual add) are checked against it on the device.
#include "kernels/rms_norm.h"

#include <gtest/gtest.h>

#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

using testing::fraction_equal;
using testing::relative_error;

TEST(RmsNormReference, MatchesHandComputedValues) {
  const at::Tensor x = at::tensor(std::vector<float>{3, 4}).view({1, 2});
  const at::Tensor w = at::tensor(std::vector<float>{1, 2});
  // rms = sqrt((9 + 16) / 2) = 3.5355; x / rms = (0.8485, 1.1314); times w
  const at::Tensor y = rms_norm_reference(x, w, 0.0);
  EXPECT_NEAR(y[0][0].item<float>(), 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 2 * 4 / std::sqrt(12.5), 1e-6);
}

TEST(AddRmsNormReference, AddsThenNormalises) {
  const at::Tensor x = at::tensor(std::vector<float>{1, 1}).view({1, 2});
  const at::Tensor r = at::tensor(std::vector<float>{2, 3}).view({1, 2});
  const at::Tensor w = at::tensor(std::vector<float>{1, 1});
  const AddRmsNorm y = add_rms_norm_reference(x, r, w, 0.0);
  EXPECT_FLOAT_EQ(y.sum[0][1].item<float>(), 4.0f);
  // sum (3, 4): as in the hand-computed case above
  EXPECT_NEAR(y.normed[0][0].item<float>(), 3 / std::sqrt(12.5), 1e-6);
}

TEST(RmsNormCuda, MatchesReferenceOnRandomInputs) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const std::int64_t cols : {7, 128, 576, 2048, 7168}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor x = at::randn({37, cols}, opts) * 3, w = at::randn({cols}, opts);
      const at::Tensor got = rms_norm_cuda(x, w, 1e-6), want = rms_norm_reference(x, w, 1e-6);
      // Both round x * inv_rms to dtype then multiply; they differ only in FP32 summation order.
      EXPECT_LT(relative_error(got, want), dtype == at::kFloat ? 1e-6 : 1e-2)
          << c10::toString(dtype) << " cols " << cols;
      EXPECT_FALSE(got.isnan().any().item<bool>());
    }
}

TEST(RmsNormCuda, StridedRowsAndLeadingDims) {
  PONDER_REQUIRE_GPU();
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor wide = at::randn({4, 9, 640}, opts);
  const at::Tensor x = wide.narrow(-1, 64, 512), w = at::randn({512}, opts);  // row stride 640
  EXPECT_LT(relative_error(rms_norm_cuda(x, w, 1e-6), rms_norm_reference(x, w, 1e-6)), 1e-2);
}

TEST(AddRmsNormCuda, SumIsExactAndNormMatchesReference) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const std::int64_t cols : {5, 2048, 7168}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor x = at::randn({29, cols}, opts) * 4, r = at::randn({29, cols}, opts);
      const at::Tensor w = at::randn({cols}, opts);
      const AddRmsNorm got = add_rms_norm_cuda(x, r, w, 1e-6);
      const AddRmsNorm want = add_rms_norm_reference(x, r, w, 1e-6);
      // One rounding of the same FP32 sum: bitwise equal.
      EXPECT_EQ(fraction_equal(got.sum, want.sum), 1.0) << c10::toString(dtype) << " " << cols;
      EXPECT_LT(relative_error(got.normed, want.normed), dtype == at::kFloat ? 1e-6 : 1e-2)
          << c10::toString(dtype) << " cols " << cols;
    }
}

}  // namespace
}  // namespace ponder::kernels
