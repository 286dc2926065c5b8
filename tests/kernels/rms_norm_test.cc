// Kernel vs reference: the CPU reference is checked against hand-computed values everywhere;
// the CUDA kernel is checked against the reference on the device (skipped without a GPU).
#include "kernels/rms_norm.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>

namespace ponder::kernels {
namespace {

TEST(RmsNormReference, MatchesHandComputedValues) {
  const at::Tensor x = at::tensor(std::vector<float>{3, 4}).view({1, 2});
  const at::Tensor w = at::tensor(std::vector<float>{1, 2});
  // rms = sqrt((9 + 16) / 2) = 3.5355; x / rms = (0.8485, 1.1314); times w
  const at::Tensor y = rms_norm_reference(x, w, 0.0);
  EXPECT_NEAR(y[0][0].item<float>(), 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 2 * 4 / std::sqrt(12.5), 1e-6);
}

TEST(RmsNormCuda, MatchesReferenceOnRandomInputs) {
  if (!built_with_cuda() || !at::hasCUDA())
    GTEST_SKIP() << "no CUDA device (the kernel is tested on the GPU machine)";
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const std::int64_t cols : {7, 128, 576, 2048, 7168}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor x = at::randn({37, cols}, opts) * 3, w = at::randn({cols}, opts);
      const at::Tensor got = rms_norm_cuda(x, w, 1e-6), want = rms_norm_reference(x, w, 1e-6);
      const double error =
          ((got.to(at::kDouble) - want.to(at::kDouble)).norm() / want.to(at::kDouble).norm())
              .item<double>();
      // Both round x * inv_rms to dtype then multiply; they differ only in FP32 summation order.
      EXPECT_LT(error, dtype == at::kFloat ? 1e-6 : 1e-2)
          << c10::toString(dtype) << " cols " << cols;
      EXPECT_FALSE(got.isnan().any().item<bool>());
    }
}

}  // namespace
}  // namespace ponder::kernels
