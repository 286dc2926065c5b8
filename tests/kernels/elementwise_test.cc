// SwiGLU, rotary-embedding and MLA cache-write kernels against their ATen references on the
// device, with rotary tables from model::Rotary (default and DeepSeek YaRN); references checked by
// hand everywhere.
#include "kernels/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "model/layers.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

using testing::fraction_equal;
using testing::relative_error;
using testing::yarn_config;

TEST(SwigluReference, MatchesHandComputedValues) {
  const at::Tensor y =
      swiglu_reference(at::tensor(std::vector<float>{1, -2}), at::tensor(std::vector<float>{2, 3}));
  EXPECT_NEAR(y[0].item<float>(), 2.0 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(y[1].item<float>(), 3 * -2.0 / (1 + std::exp(2.0)), 1e-6);
}

TEST(RopeReference, RotatesPairsByTheTableAngle) {
  const double angle = 0.7;
  const at::Tensor cos = at::full({1, 1}, std::cos(angle)), sin = at::full({1, 1}, std::sin(angle));
  const at::Tensor x = at::tensor(std::vector<float>{2, 1}).view({1, 1, 2});
  const at::Tensor y = rope_reference(x, cos, sin, false);
  EXPECT_NEAR(y[0][0][0].item<float>(), 2 * std::cos(angle) - std::sin(angle), 1e-6);
  EXPECT_NEAR(y[0][0][1].item<float>(), std::cos(angle) + 2 * std::sin(angle), 1e-6);
}

TEST(SwigluCuda, MatchesReference) {
  PONDER_REQUIRE_GPU();
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
    for (const std::int64_t cols : {3, 1408, 10944}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      // gate and up as the two halves of one fused projection: strided rows, no copy.
      const at::Tensor gate_up = at::randn({67, 2 * cols}, opts) * 3;
      const at::Tensor gate = gate_up.narrow(1, 0, cols), up = gate_up.narrow(1, cols, cols);
      const at::Tensor got = swiglu_cuda(gate, up), want = swiglu_reference(gate, up);
      EXPECT_LT(relative_error(got, want), dtype == at::kFloat ? 1e-6 : 4e-3)
          << c10::toString(dtype) << " cols " << cols;
      // expf vs ATen's exp can differ by an ulp in FP32, which rarely moves a 16-bit rounding.
      EXPECT_GT(fraction_equal(got, want), dtype == at::kFloat ? 0.9 : 0.99)
          << c10::toString(dtype) << " cols " << cols;
    }
}

TEST(RopeCuda, MatchesReferenceWithDefaultAndYarnTables) {
  PONDER_REQUIRE_GPU();
  const model::Rotary plain(model::ModelConfig{}, 64), yarn(yarn_config(), 64);
  const at::Tensor positions =
      at::randint(0, 160000, {91}, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA);
  for (const model::Rotary* rotary : {&plain, &yarn}) {
    const model::RotaryTables t = rotary->tables(positions);
    for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf})
      for (const bool interleaved : {false, true})
        for (const std::int64_t offset : {128, 127}) {  // 127: unaligned rows, the scalar path
          const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
          // The rope part of MLA queries: a strided view [tokens, heads, 64] of [.., .., 192].
          const at::Tensor q = at::randn({91, 16, 192}, opts), x = q.narrow(-1, offset, 64);
          const at::Tensor got = rope_cuda(x, t.cos, t.sin, interleaved);
          const at::Tensor want = rope_reference(x, t.cos, t.sin, interleaved);
          const std::string what =
              std::string(c10::toString(dtype)) + (interleaved ? " interleaved" : " half") +
              (rotary == &yarn ? " yarn" : " default") + " offset " + std::to_string(offset);
          // Same roundings in the same order (no fused multiply-add): bitwise equal.
          EXPECT_EQ(fraction_equal(got, want), 1.0) << what;
          EXPECT_LT(relative_error(got, want), 1e-7) << what;
        }
  }
}

// kv_a rows [3, 4 | 1, 0] with norm weight (1, 2) and angle 0.7 into slot 2 of 4 rows: the normed
// latent (3, 8) / sqrt(12.5) and the key (cos, sin); the other rows untouched.
TEST(MlaCacheWriteReference, WritesNormedLatentAndRotatedKeyIntoTheSlot) {
  const double angle = 0.7;
  at::Tensor pages = at::full({2, 2, 4}, -1.0f);  // 2 pages of 2 slots, rows of lora 2 + rope 2
  const at::Tensor kv_a = at::tensor(std::vector<float>{3, 4, 1, 0}).view({1, 4});
  mla_cache_write_reference(pages, kv_a, at::tensor(std::vector<float>{1, 2}),
                            at::full({1, 1}, std::cos(angle)), at::full({1, 1}, std::sin(angle)),
                            at::tensor(std::vector<std::int64_t>{2}), 0.0);
  const at::Tensor row = pages[1][0];
  EXPECT_NEAR(row[0].item<float>(), 3 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(row[1].item<float>(), 8 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(row[2].item<float>(), std::cos(angle), 1e-6);
  EXPECT_NEAR(row[3].item<float>(), std::sin(angle), 1e-6);
  EXPECT_EQ(pages.eq(-1.0f).sum().item<std::int64_t>(), 12);
}

// DeepSeek-V2 widths (latent 512, key 64) from a strided kv_a (the columns after the query in one
// stacked projection) into random slots of 64-token pages: the key bitwise equal to the reference
// (the rope kernel's roundings), the latent within the FP32 summation order, other rows untouched.
TEST(MlaCacheWriteCuda, MatchesReferenceIntoPageSlots) {
  PONDER_REQUIRE_GPU();
  const model::Rotary yarn(yarn_config(), 64);
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const std::int64_t tokens : {1, 37, 256}) {
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const auto longs = at::TensorOptions().device(at::kCUDA).dtype(at::kLong);
      const at::Tensor stacked = at::randn({tokens, 3072 + 576}, opts) * 3;
      const at::Tensor kv_a = stacked.narrow(-1, 3072, 576), w = at::randn({512}, opts);
      const model::RotaryTables t = yarn.tables(at::randint(0, 4096, {tokens}, longs));
      const at::Tensor slots = at::randperm(40 * 64, longs).narrow(0, 0, tokens);
      const at::Tensor before = at::randn({40, 64, 576}, opts);
      at::Tensor got = before.clone(), want = before.clone();
      mla_cache_write_cuda(got, kv_a, w, t.cos, t.sin, slots, 1e-6);
      mla_cache_write_reference(want, kv_a, w, t.cos, t.sin, slots, 1e-6);
      const std::string what = std::string(c10::toString(dtype)) + " " + std::to_string(tokens);
      const at::Tensor got_rows = got.view({-1, 576}).index_select(0, slots);
      const at::Tensor want_rows = want.view({-1, 576}).index_select(0, slots);
      EXPECT_EQ(fraction_equal(got_rows.narrow(1, 512, 64), want_rows.narrow(1, 512, 64)), 1.0)
          << what;
      EXPECT_LT(relative_error(got_rows.narrow(1, 0, 512), want_rows.narrow(1, 0, 512)),
                dtype == at::kFloat ? 1e-6 : 1e-2)
          << what;
      at::Tensor untouched = at::ones({40 * 64}, longs).to(at::kBool);
      untouched.index_fill_(0, slots, false);
      EXPECT_EQ(fraction_equal(got.view({-1, 576}).index({untouched}),
                               before.view({-1, 576}).index({untouched})),
                1.0)
          << what;
    }
}

TEST(RopeCuda, WritesIntoColumnsOfAWiderBufferAndNothingElse) {
  // The MLA decode query's last 64 of 576 columns (aligned: the vector path; one column earlier:
  // the scalar path), with and without the early PDL trigger: rope_cuda's values bit for bit, the
  // other columns left as they were (NaN).
  PONDER_REQUIRE_GPU();
  const model::Rotary yarn(yarn_config(), 64);
  const model::RotaryTables t =
      yarn.tables(at::randint(0, 160000, {37}, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA));
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const std::int64_t column : {512, 511})
      for (const bool trigger : {false, true}) {
        const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
        const at::Tensor x = at::randn({37, 16, 192}, opts).narrow(-1, 128, 64);
        const at::Tensor buffer = at::full({37, 16, 576}, NAN, opts);
        rope_cuda_out(buffer.narrow(-1, column, 64), x, t.cos, t.sin, true, trigger);
        const std::string what = std::string(c10::toString(dtype)) + " column " +
                                 std::to_string(column) + (trigger ? " trigger" : "");
        EXPECT_TRUE(buffer.narrow(-1, column, 64).equal(rope_cuda(x, t.cos, t.sin, true))) << what;
        const at::Tensor rest = at::cat(
            {buffer.narrow(-1, 0, column), buffer.narrow(-1, column + 64, 512 - column)}, -1);
        EXPECT_TRUE(rest.isnan().all().item<bool>()) << what;
      }
  const at::Tensor x = at::randn({37, 16, 64}, at::TensorOptions().device(at::kCUDA));
  EXPECT_THROW(rope_cuda_out(at::empty({37, 16, 64}, x.options().dtype(at::kBFloat16)), x, t.cos,
                             t.sin, true),
               Error);
}

}  // namespace
}  // namespace ponder::kernels
