// FP8 E4M3 quantisation and block-scaled GEMM: the ATen reference against hand-computed E4M3
// values and an independent per-block sum; the CUDA quantisers (bit-exact) and the cuBLAS GEMM
// against the reference on the device.
#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

using testing::relative_error;

float at2(const at::Tensor& t, std::int64_t r, std::int64_t c) { return t[r][c].item().toFloat(); }

TEST(Fp8Reference, TilesRoundToHandComputedE4m3Values) {
  // Row 0: amax 448, scale 1. 1.0625 ties between 1 and 1.125 -> even mantissa 1; 1.1875 ties
  // between 1.125 and 1.25 -> 1.25; 300 lies in [256, 512) where the step is 32 -> 288; 0.003 is
  // subnormal (step 2^-9) -> 1.536 steps -> 2 steps = 0.00390625.
  // Row 1: amax 7, scale 7 / 448 = 2^-6: 7 -> 448, -3.5 -> -224, 0.01 -> 0.64 -> 0.625.
  const at::Tensor x =
      at::tensor(std::vector<float>{448, 1.0625f, 1.1875f, 300, 0.003f, 7, -3.5f, 0.01f, 0, 0})
          .view({2, 5});
  const Fp8Tensor q = quantize_fp8_reference(x, Fp8Scaling::kTile1x128);
  ASSERT_EQ(q.data.scalar_type(), at::kFloat8_e4m3fn);
  ASSERT_EQ(q.scale.sizes(), (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(at2(q.scale, 0, 0), 1.0f);
  EXPECT_EQ(at2(q.scale, 1, 0), 0.015625f);
  const std::vector<float> want = {448, 1, 1.25f, 288, 0.00390625f, 448, -224, 0.625f, 0, 0};
  const at::Tensor got = q.data.to(at::kFloat).reshape(-1);
  for (std::size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(got[static_cast<std::int64_t>(i)].item<float>(), want[i]) << "element " << i;
  const at::Tensor back = dequantize_fp8(q, at::kFloat);
  EXPECT_EQ(at2(back, 1, 2), 0.625f * 0.015625f);
}

TEST(Fp8Reference, EachTileAndBlockHasItsOwnScale) {
  // 130 columns: tiles [0, 128) and [128, 130); a zero tile keeps zeros and a positive scale.
  at::Tensor x = at::zeros({3, 130});
  x[0].narrow(0, 0, 128).fill_(1.0);
  x[0][128] = 4.0;
  x[1][129] = -2.0;
  const Fp8Tensor t = quantize_fp8_reference(x, Fp8Scaling::kTile1x128);
  ASSERT_EQ(t.scale.sizes(), (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(at2(t.scale, 0, 0), 1.0f / 448);
  EXPECT_EQ(at2(t.scale, 0, 1), 4.0f / 448);
  EXPECT_EQ(at2(t.scale, 1, 1), 2.0f / 448);
  EXPECT_GT(at2(t.scale, 2, 0), 0.0f);
  // Every value is its tile's amax or 0: it maps to +-448 and back up to the scale's rounding.
  EXPECT_LT((dequantize_fp8(t, at::kFloat) - x).abs().max().item<float>(), 1e-6);

  at::manual_seed(1);
  const at::Tensor w = at::randn({200, 300}) * at::rand({200, 1}) * 10;
  const Fp8Tensor b = quantize_fp8_reference(w, Fp8Scaling::kBlock128x128);
  ASSERT_EQ(b.scale.sizes(), (std::vector<std::int64_t>{2, 3}));
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 3; ++j) {
      const at::Tensor block = w.narrow(0, i * 128, std::min<std::int64_t>(128, 200 - i * 128))
                                   .narrow(1, j * 128, std::min<std::int64_t>(128, 300 - j * 128));
      EXPECT_EQ(at2(b.scale, i, j), block.abs().max().item<float>() / 448.0f) << i << "," << j;
    }
  // E4M3 keeps 3 mantissa bits: normal values are within 2^-4 relative of the original.
  const at::Tensor back = dequantize_fp8(b, at::kFloat);
  const at::Tensor normal =
      w.abs() >
      b.scale.repeat_interleave(128, 0).repeat_interleave(128, 1).narrow(0, 0, 200).narrow(1, 0,
                                                                                           300) *
          std::ldexp(1.0, -6);
  EXPECT_LE(((back - w).abs() / w.abs()).masked_select(normal).max().item<float>(), 0.0625f);
  // Transposing a block-quantised matrix keeps its blocks.
  EXPECT_TRUE(at::equal(dequantize_fp8(b.t(), at::kFloat), back.t()));
}

TEST(Fp8Reference, MatmulEqualsTheSumOverScaledKBlocks) {
  at::manual_seed(2);
  const at::Tensor x = at::randn({40, 300}), w = at::randn({70, 300}) * 0.05;
  const Fp8Tensor a = quantize_fp8_reference(x, Fp8Scaling::kTile1x128);
  const Fp8Tensor b = quantize_fp8_reference(w, Fp8Scaling::kBlock128x128);
  // Independent form: per K block, raw E4M3 products scaled by both scales, in FP64.
  at::Tensor want = at::zeros({40, 70}, at::kDouble);
  for (std::int64_t kb = 0; kb < 3; ++kb) {
    const std::int64_t k0 = kb * 128, len = std::min<std::int64_t>(128, 300 - k0);
    const at::Tensor ad = a.data.narrow(1, k0, len).to(at::kDouble);
    const at::Tensor bd = b.data.narrow(1, k0, len).to(at::kDouble);
    const at::Tensor sb =
        b.scale.select(1, kb).to(at::kDouble).repeat_interleave(128).narrow(0, 0, 70);
    want += at::matmul(ad, bd.t()) * a.scale.select(1, kb).to(at::kDouble).unsqueeze(1) *
            sb.unsqueeze(0);
  }
  const at::Tensor got = fp8_matmul_reference(a, b, at::kFloat);
  EXPECT_LT(relative_error(got, want), 1e-6);
  // Against the unquantised product: E4M3 rounding of both operands, averaged over K = 300.
  EXPECT_LT(relative_error(got, at::matmul(x, w.t())), 0.05);
  // 1x128 tiles on both sides (the weight-gradient GEMM).
  const Fp8Tensor bt = quantize_fp8_reference(w, Fp8Scaling::kTile1x128);
  EXPECT_LT(relative_error(fp8_matmul_reference(a, bt, at::kFloat), at::matmul(x, w.t())), 0.05);
}

TEST(Fp8Reference, TransposedTilesRunDownColumns) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({150, 20});
  const Fp8Tensor q = quantize_fp8_transposed(x);
  ASSERT_EQ(q.data.sizes(), (std::vector<std::int64_t>{20, 150}));
  ASSERT_EQ(q.scale.sizes(), (std::vector<std::int64_t>{20, 2}));
  EXPECT_EQ(at2(q.scale, 5, 1), x.select(1, 5).narrow(0, 128, 22).abs().max().item<float>() / 448);
}

TEST(Fp8Reference, SegmentsQuantiseEachGroupsTransposeOnItsOwn) {
  at::manual_seed(6);
  const at::Tensor x = at::randn({300, 20}) * at::rand({300, 1}) * 4;
  // Segments [0, 128), [128, 128) (empty), [128, 300).
  const auto q = quantize_fp8_transposed_segments(x, {128, 128, 300});
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].data.sizes(), (std::vector<std::int64_t>{20, 0}));
  ASSERT_EQ(q[2].data.sizes(), (std::vector<std::int64_t>{20, 172}));
  ASSERT_EQ(q[2].scale.sizes(), (std::vector<std::int64_t>{20, 2}));
  // Column 3's second tile of the last segment: rows 256 .. 299 of x.
  EXPECT_EQ(at2(q[2].scale, 3, 1),
            x.select(1, 3).narrow(0, 256, 44).abs().max().item<float>() / 448);
  EXPECT_EQ(at2(q[0].scale, 7, 0),
            x.select(1, 7).narrow(0, 0, 128).abs().max().item<float>() / 448);
  EXPECT_THROW(quantize_fp8_transposed_segments(x, {100, 300}), Error);  // not on a tile edge
  EXPECT_THROW(quantize_fp8_transposed_segments(x, {128, 256}), Error);  // rows left over
}

TEST(Fp8Reference, BlocksComeWithTheirTranspose) {
  at::manual_seed(7);
  const at::Tensor w = at::randn({3, 256, 200});
  const Fp8Blocks q = quantize_fp8_blocks_with_transpose(w);
  ASSERT_EQ(q.data_t.sizes(), (std::vector<std::int64_t>{3, 200, 256}));
  ASSERT_EQ(q.scale.sizes(), (std::vector<std::int64_t>{3, 2, 2}));
  // Matrix 2's block (1, 1) spans rows 128 .. 255 and columns 128 .. 199.
  EXPECT_EQ(at2(q.scale[2], 1, 1),
            w[2].narrow(0, 128, 128).narrow(1, 128, 72).abs().max().item<float>() / 448);
  for (std::int64_t b = 0; b < 3; ++b)
    EXPECT_TRUE(at::equal(dequantize_fp8(q.transposed(b), at::kFloat),
                          dequantize_fp8(q.matrix(b), at::kFloat).t()));
  EXPECT_THROW(quantize_fp8_blocks_with_transpose(at::zeros({2, 100, 128})), Error);
}

TEST(Fp8Cuda, QuantisersAreBitExactWithTheReference) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const auto& [rows, cols] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {1, 7}, {37, 130}, {128, 256}, {300, 1000}, {4096, 7168}}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      at::Tensor x = at::randn({rows, cols}, opts) * 3;
      if (rows > 2) x[2].zero_();
      const std::string what = std::string(c10::toString(dtype)) + " " + std::to_string(rows) +
                               "x" + std::to_string(cols);
      for (const auto scaling : {Fp8Scaling::kTile1x128, Fp8Scaling::kBlock128x128}) {
        const Fp8Tensor got = quantize_fp8_cuda(x, scaling);
        const Fp8Tensor want = quantize_fp8_reference(x, scaling);
        EXPECT_TRUE(at::equal(got.scale, want.scale)) << what;
        EXPECT_TRUE(at::equal(got.data.view(at::kByte), want.data.view(at::kByte))) << what;
      }
      const Fp8Tensor got = quantize_fp8_transposed_cuda(x);
      const Fp8Tensor want = quantize_fp8_reference(x.t(), Fp8Scaling::kTile1x128);
      EXPECT_TRUE(at::equal(got.scale, want.scale)) << "transposed " << what;
      EXPECT_TRUE(at::equal(got.data.view(at::kByte), want.data.view(at::kByte)))
          << "transposed " << what;
    }
}

void expect_same(const Fp8Tensor& got, const Fp8Tensor& want, const std::string& what) {
  EXPECT_TRUE(at::equal(got.scale.cpu(), want.scale.cpu())) << what;
  EXPECT_TRUE(at::equal(got.data.view(at::kByte).cpu(), want.data.view(at::kByte).cpu())) << what;
}

TEST(Fp8Cuda, FusedTransposeAndSegmentQuantisersAreBitExact) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    const std::string type = c10::toString(dtype);
    for (const auto& shape : std::vector<std::vector<std::int64_t>>{
             {37, 130}, {300, 1000}, {4, 256, 384}, {16, 1024, 512}}) {
      const at::Tensor w = at::randn(shape, opts);
      const Fp8Blocks got = quantize_fp8_blocks_with_transpose_cuda(w);
      const Fp8Blocks want = quantize_fp8_blocks_with_transpose(w.cpu());
      const std::string what = type + " " + c10::str(w.sizes());
      for (std::int64_t b = 0; b < got.data.size(0); ++b) {
        expect_same(got.matrix(b), want.matrix(b), what + " matrix " + std::to_string(b));
        expect_same(got.transposed(b), want.transposed(b),
                    what + " transposed " + std::to_string(b));
      }
    }
    // Groups as the MoE experts' padded rows: empty ones and a ragged last one included.
    const at::Tensor x = at::randn({1000, 300}, opts);
    const std::vector<std::int64_t> ends = {0, 256, 256, 384, 896, 1000};
    const auto got = quantize_fp8_transposed_segments_cuda(x, ends);
    const auto want = quantize_fp8_transposed_segments(x.cpu(), ends);
    for (std::size_t g = 0; g < ends.size(); ++g)
      expect_same(got[g], want[g], type + " segment " + std::to_string(g));
  }
}

TEST(Fp8Cuda, BlockScaledGemmMatchesTheReference) {
  PONDER_REQUIRE_GPU();
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  for (const auto& [m, n, k] : std::vector<std::array<std::int64_t, 3>>{
           {128, 256, 512}, {4096, 2048, 7168}, {1024, 7168, 2048}, {100, 320, 200}}) {
    const at::Tensor x = at::randn({m, k}, opts), w = at::randn({n, k}, opts) * 0.02;
    const Fp8Tensor a = quantize_fp8(x, Fp8Scaling::kTile1x128);
    for (const auto scaling : {Fp8Scaling::kBlock128x128, Fp8Scaling::kTile1x128}) {
      const Fp8Tensor b = quantize_fp8(w, scaling);
      ASSERT_TRUE(fp8_matmul_cuda_supported(a, b));  // ragged shapes are padded
      const at::Tensor got = fp8_matmul_cuda(a, b, at::kBFloat16);
      const at::Tensor want = fp8_matmul_reference(a, b, at::kFloat);
      // Same E4M3 products and scales; FP32 accumulation order and the BF16 output rounding
      // (2^-9 relative) differ.
      EXPECT_LT(relative_error(got, want), 4e-3)
          << m << "x" << n << "x" << k
          << (scaling == Fp8Scaling::kTile1x128 ? " tiles" : " blocks");
    }
    // The backward GEMMs' layouts: transposed blocks, transposed tiles.
    const Fp8Tensor wb = quantize_fp8(w, Fp8Scaling::kBlock128x128);
    const Fp8Tensor dy = quantize_fp8(at::randn({m, n}, opts), Fp8Scaling::kTile1x128);
    EXPECT_LT(relative_error(fp8_matmul_cuda(dy, wb.t(), at::kBFloat16),
                             fp8_matmul_reference(dy, wb.t(), at::kFloat)),
              4e-3);
    const at::Tensor g = at::randn({m, n}, opts);
    const Fp8Tensor gt = quantize_fp8_transposed(g), xt = quantize_fp8_transposed(x);
    // FP32 output: Hopper's FP8 tensor cores accumulate each 128-long K block in reduced
    // precision before the FP32 scaling (DeepSeek-V3 §3.3.2); measured 1.3e-4 on an H200.
    EXPECT_LT(relative_error(fp8_matmul_cuda(gt, xt, at::kFloat),
                             fp8_matmul_reference(gt, xt, at::kFloat)),
              5e-4);
  }
}

}  // namespace
}  // namespace ponder::kernels
