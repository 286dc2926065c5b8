// kernels::grouped_gemm: the ATen reference against an FP64 oracle that multiplies each row by
// its group's weights found by position (no per-group loop), and the CUDA kernels (few-rows,
// wgmma, wgmma large tiles) against both on the device: plain and SwiGLU, with empty groups,
// one-row groups and a group longer than one 64-row pass over its weights; the wgmma kernels also
// on problems with more work items than CTAs (decode-like; ragged groups around 128-row tiles).
#include "kernels/moe_gemm.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "core/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

struct Problem {
  at::Tensor x, w, ends;
};

Problem make_problem(const at::Device& device, at::ScalarType dtype, std::int64_t n, std::int64_t k,
                     const std::vector<std::int32_t>& sizes = {3, 0, 1, 70, 24, 0, 64, 5}) {
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

// Where got and want differ most, and the 8 x 8 block around it of both: a failure on the device
// then shows whether the values are permuted (fragment mapping), shifted or garbage (descriptor).
std::string worst_block(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kCPU, at::kFloat), w = want.to(at::kCPU, at::kFloat);
  const std::int64_t worst = (g - w).abs().argmax().item<std::int64_t>(), cols = g.size(1);
  const std::int64_t row = worst / cols, col = worst % cols, r0 = row / 8 * 8, c0 = col / 8 * 8;
  std::ostringstream out;
  out << "largest difference at row " << row << ", column " << col << "; rows " << r0
      << "+, columns " << c0 << "+ of got:\n"
      << g.slice(0, r0, r0 + 8).slice(1, c0, c0 + 8) << "\nand of want:\n"
      << w.slice(0, r0, r0 + 8).slice(1, c0, c0 + 8);
  return out.str();
}

// The kernel against the reference, and against the FP64 oracle when `oracle_too` (it holds a
// weight matrix per row: small problems only).
void expect_matches(const Problem& p, GroupedKernel kernel, bool oracle_too = true) {
  ASSERT_TRUE(grouped_gemm_supported(p.x, p.w, kernel));
  for (const bool swiglu : {false, true}) {
    const at::Tensor got = grouped_gemm_cuda(p.x, p.w, p.ends, swiglu, kernel);
    const at::Tensor want = grouped_gemm_reference(p.x, p.w, p.ends, swiglu);
    ASSERT_EQ(got.sizes(), want.sizes());
    // Both sum exact BF16 products in FP32 and round once: they differ by the order of the sums.
    const double error = testing::relative_error(got, want);
    EXPECT_LT(error, 4e-3) << "swiglu " << swiglu << "\n"
                           << (error < 4e-3 ? std::string() : worst_block(got, want));
    if (oracle_too) {
      EXPECT_LT(testing::relative_error(got, oracle(p, swiglu)), 1e-2) << "swiglu " << swiglu;
    }
  }
}

TEST(GroupedGemmCuda, MatchesReferenceAndOracle) {
  PONDER_REQUIRE_GPU();
  expect_matches(make_problem(at::kCUDA, at::kBFloat16, 256, 192), GroupedKernel::kFewRows);
}

TEST(GroupedGemmCuda, WgmmaMatchesReferenceAndOracle) {
  PONDER_REQUIRE_GPU();
  if (compute_capability() != 90) GTEST_SKIP() << "the wgmma kernel is built for sm_90a only";
  // K of 3 tiles (fewer than the 4 stages), 2 items per group, the 70-row group in 2 passes, the
  // last rows inside the final 64-row box (its rows past x arrive as zeros).
  expect_matches(make_problem(at::kCUDA, at::kBFloat16, 256, 192), GroupedKernel::kWgmma);
  // Decode-like: 64 groups of 0-47 rows, 10 items per group (640, more than 2 CTAs per SM on
  // an H100/H200), 16 K tiles: each CTA runs several items through its ring, which wraps.
  std::vector<std::int32_t> sizes;
  for (int g = 0; g < 64; ++g) sizes.push_back((g * 37 + 11) % 48);
  expect_matches(make_problem(at::kCUDA, at::kBFloat16, 1280, 1024, sizes), GroupedKernel::kWgmma,
                 false);
}

TEST(GroupedGemmCuda, WgmmaLargeMatchesReferenceAndOracle) {
  PONDER_REQUIRE_GPU();
  if (compute_capability() != 90) GTEST_SKIP() << "the wgmma kernels are built for sm_90a only";
  // Groups of 0-70 rows, each inside one 128-row tile (the rows past the group belong to the
  // next one or, at the end, lie past x and arrive as zeros); K of 3 tiles, fewer than the 4
  // stages; one 256-column tile (SwiGLU: 128 gate + 128 up rows).
  expect_matches(make_problem(at::kCUDA, at::kBFloat16, 256, 192), GroupedKernel::kWgmmaLarge);
  // Ragged groups around the 128-row tile (0, 1, 127, 128, 129, 255, 256, 257 and 300-700 rows),
  // 4 column tiles (SwiGLU: 4 of 128 inner columns) and 16 K tiles: ~500 items on ~132 CTAs, so
  // each CTA runs several items of different groups through its ring, which wraps.
  std::vector<std::int32_t> sizes = {0, 1, 127, 128, 129, 255, 256, 257};
  for (int g = 0; g < 24; ++g) sizes.push_back((g * 211 + 300) % 700);
  expect_matches(make_problem(at::kCUDA, at::kBFloat16, 1024, 1024, sizes),
                 GroupedKernel::kWgmmaLarge, false);
}

TEST(GroupedGemmCuda, RejectsShapesItDoesNotTile) {
  PONDER_REQUIRE_GPU();
  const Problem p = make_problem(at::kCUDA, at::kBFloat16, 256, 100);
  EXPECT_FALSE(grouped_gemm_supported(p.x, p.w));
  EXPECT_THROW(grouped_gemm_cuda(p.x, p.w, p.ends, false), Error);
  EXPECT_FALSE(grouped_gemm_supported(p.x, p.w, GroupedKernel::kWgmma));
  EXPECT_THROW(grouped_gemm_cuda(p.x, p.w, p.ends, false, GroupedKernel::kWgmma), Error);
  // n % 128 == 0 suits the few-rows kernels, the large tiles need n % 256 == 0
  const Problem narrow = make_problem(at::kCUDA, at::kBFloat16, 384, 128);
  EXPECT_FALSE(grouped_gemm_supported(narrow.x, narrow.w, GroupedKernel::kWgmmaLarge));
  EXPECT_THROW(
      grouped_gemm_cuda(narrow.x, narrow.w, narrow.ends, false, GroupedKernel::kWgmmaLarge), Error);
  const Problem q = make_problem(at::kCUDA, at::kBFloat16, 256, 128);
  EXPECT_THROW(grouped_gemm_cuda(q.x, q.w, q.ends.to(at::kLong), false), Error);
}

}  // namespace
}  // namespace ponder::kernels
