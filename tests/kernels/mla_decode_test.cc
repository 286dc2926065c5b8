// MLA decode attention: the CUDA kernels against an FP64 oracle and against the model's absorbed
// decode path (model::gather_padded_pages + kernels::mla_decode_reference) on random paged
// caches whose unused slots hold NaN, for 16 to 256 heads (from 64 on, the wgmma kernel on an
// H100/H200, and the mma.sync kernel when asked), ragged lengths and several splits (combined in
// the kernel itself and by the separate combine kernel), calls back to back and in CUDA graphs.
// The FP8 latent cache: its rows against hand-computed bytes and values (CPU), and both kernels
// over FP8 pages against the reference over the same pages dequantised.
#include "kernels/mla_decode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/error.h"
#include "kernels/cuda_graph.h"
#include "kernels/elementwise.h"
#include "model/layers.h"
#include "tests/kernels/kernel_test_util.h"
#ifdef PONDER_TEST_LATE_WRITER
#include <iostream>

#include "tests/kernels/late_writer_kernel.h"
#endif

namespace ponder::kernels {
namespace {

using testing::relative_error;
using testing::yarn_config;

struct Case {
  at::Tensor query, cache, tables, lens;
};

// Sequences of the given lengths on shuffled pages of a NaN-filled cache (only their own
// tokens are written), with spare table columns pointing at page 0.
Case make_case(const std::vector<std::int64_t>& lengths, std::int64_t heads) {
  const auto batch = static_cast<std::int64_t>(lengths.size());
  std::int64_t pages = 0, widest = 0;
  for (const std::int64_t n : lengths) {
    pages += (n + 63) / 64;
    widest = std::max(widest, (n + 63) / 64);
  }
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  at::Tensor cache = at::full({pages + 1, 64, 576}, NAN, bf16);
  const at::Tensor order = at::randperm(pages, at::TensorOptions().dtype(at::kLong)) + 1;
  at::Tensor tables = at::zeros({batch, widest + 1}, at::TensorOptions().dtype(at::kLong));
  std::int64_t next = 0;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t j = 0; j < (lengths[b] + 63) / 64; ++j) tables[b][j] = order[next++];
    const at::Tensor flat = cache.view({-1, 576});
    for (std::int64_t j = 0; j < (lengths[b] + 63) / 64; ++j) {
      const std::int64_t n = std::min<std::int64_t>(64, lengths[b] - 64 * j);
      flat.narrow(0, tables[b][j].item<std::int64_t>() * 64, n).copy_(at::randn({n, 576}, bf16));
    }
  }
  return {at::randn({batch, heads, 576}, bf16), cache, tables.to(at::kCUDA),
          at::tensor(lengths, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA)};
}

// softmax(scale * q . k) @ latent per sequence, in FP64 on the CPU.
at::Tensor oracle(const Case& c, double scale) {
  std::vector<at::Tensor> out;
  const at::Tensor cache = c.cache.to(at::kCPU, at::kDouble).view({-1, 576});
  for (std::int64_t b = 0; b < c.query.size(0); ++b) {
    const std::int64_t n = c.lens[b].item<std::int64_t>();
    const at::Tensor pages = c.tables[b].to(at::kCPU).narrow(0, 0, (n + 63) / 64);
    const at::Tensor rows = (pages.unsqueeze(1) * 64 + at::arange(64, at::kLong).unsqueeze(0))
                                .reshape(-1)
                                .narrow(0, 0, n);
    const at::Tensor entries = cache.index_select(0, rows);
    const at::Tensor q = c.query[b].to(at::kCPU, at::kDouble);
    out.push_back(at::mm((at::mm(q, entries.t()) * scale).softmax(-1), entries.narrow(1, 0, 512)));
  }
  return at::stack(out);
}

// The case's pages as FP8 rows (NaN codes where the cache held NaN); c.cache becomes those rows
// dequantised (kernels::mla_cache_dequantize), what the oracles read.
at::Tensor to_fp8(Case& c) {
  const at::Tensor flat = c.cache.view({-1, 576});
  const at::Tensor fp8 = mla_cache_quantize(flat.narrow(1, 0, 512), flat.narrow(1, 512, 64))
                             .view({c.cache.size(0), 64, 656});
  c.cache = mla_cache_dequantize(fp8, 512, at::kBFloat16);
  return fp8;
}

at::Tensor model_path(const Case& c, double scale) {
  const std::int64_t longest = c.lens.max().item<std::int64_t>();
  const at::Tensor valid = at::arange(longest, c.lens.options()).unsqueeze(0) < c.lens.unsqueeze(1);
  const at::Tensor entries = model::gather_padded_pages(c.cache, c.tables, valid);
  return mla_decode_reference(c.query, entries, valid, scale, 512);
}

TEST(MlaDecodeReference, MatchesFp64OracleOnCpu) {
  // The reference alone on the CPU with FP64 inputs: only its softmax runs in FP32.
  const at::Tensor q = at::randn({2, 4, 576}, at::kDouble),
                   e = at::randn({2, 10, 576}, at::kDouble);
  at::Tensor valid = at::ones({2, 10}, at::kBool);
  valid[1].narrow(0, 7, 3).fill_(false);
  const at::Tensor got = mla_decode_reference(q, e, valid, 0.05, 512);
  const at::Tensor want = at::mm((at::mm(q[1], e[1].narrow(0, 0, 7).t()) * 0.05).softmax(-1),
                                 e[1].narrow(0, 0, 7).narrow(1, 0, 512));
  EXPECT_LT((got[1] - want).abs().max().item<double>(), 1e-5);
}

// e4m3 bytes: sign, 4 exponent bits (bias 7), 3 mantissa bits.
TEST(MlaCacheFp8, RowsHoldHandComputedBytesAndValues) {
  at::Tensor latent = at::zeros({2, 512});
  // group 0: amax 896 -> scale 2; 3 / 2 = 1.5 exactly, 2.125 / 2 = 1.0625 ties to even (1.0)
  latent[0].narrow(0, 0, 4).copy_(at::tensor({896.f, -896.f, 3.f, 2.125f}));
  // group 1 all zero -> scale 1; group 2: amax 448 -> scale 1, the subnormal edges: 2^-9 is the
  // smallest, 2^-10 ties to even (0), 3 * 2^-10 ties to even (2^-8)
  latent[0].narrow(0, 256, 6).copy_(
      at::tensor({448.f, -448.f, std::ldexp(1.f, -9), -std::ldexp(1.f, -9), std::ldexp(1.f, -10),
                  3 * std::ldexp(1.f, -10)}));
  // group 3: amax 1 -> scale 1 / 448; 0.5 -> 224 = 1.75 * 2^7
  latent[0].narrow(0, 384, 2).copy_(at::tensor({1.f, 0.5f}));
  latent[1].normal_();
  const at::Tensor rope = at::randn({2, 64}).to(at::kBFloat16);
  const at::Tensor rows = mla_cache_quantize(latent, rope);
  ASSERT_EQ(rows.sizes(), (at::IntArrayRef{2, 656}));
  ASSERT_EQ(rows.scalar_type(), at::kByte);
  const auto byte = [&](std::int64_t i) { return rows[0][i].item<int>(); };
  EXPECT_EQ(byte(0), 0x7E);  // 448
  EXPECT_EQ(byte(1), 0xFE);  // -448
  EXPECT_EQ(byte(2), 0x3C);  // 1.5
  EXPECT_EQ(byte(3), 0x38);  // 1.0
  for (std::int64_t i = 128; i < 256; ++i) EXPECT_EQ(byte(i), 0) << i;
  const std::vector<int> group2 = {0x7E, 0xFE, 0x01, 0x81, 0x00, 0x02};
  for (std::size_t i = 0; i < group2.size(); ++i) EXPECT_EQ(byte(256 + i), group2[i]) << i;
  EXPECT_EQ(byte(384), 0x7E);
  EXPECT_EQ(byte(385), 0x76);
  const at::Tensor scales = rows[0].narrow(0, 512, 16).clone().view(at::kFloat);
  EXPECT_EQ(scales[0].item<float>(), 2.f);
  EXPECT_EQ(scales[1].item<float>(), 1.f);
  EXPECT_EQ(scales[2].item<float>(), 1.f);
  EXPECT_EQ(scales[3].item<float>(), 1.f / 448.f);
  EXPECT_TRUE(at::equal(rows.narrow(1, 528, 128), rope.view(at::kByte)));

  const at::Tensor back = mla_cache_dequantize(rows, 512, at::kFloat);
  ASSERT_EQ(back.sizes(), (at::IntArrayRef{2, 576}));
  const auto value = [&](std::int64_t i) { return back[0][i].item<float>(); };
  const std::vector<float> group0 = {896.f, -896.f, 3.f, 2.f};
  for (std::size_t i = 0; i < group0.size(); ++i) EXPECT_EQ(value(i), group0[i]) << i;
  const std::vector<float> edges = {
      448.f, -448.f, std::ldexp(1.f, -9), -std::ldexp(1.f, -9), 0.f, std::ldexp(1.f, -8)};
  for (std::size_t i = 0; i < edges.size(); ++i) EXPECT_EQ(value(256 + i), edges[i]) << i;
  // 448 and 224 times the FP32 scale 1/448, then rounded to BF16: exactly 1 and 0.5
  const at::Tensor bf16 = mla_cache_dequantize(rows, 512, at::kBFloat16);
  EXPECT_EQ(bf16[0][384].item<float>(), 1.f);
  EXPECT_EQ(bf16[0][385].item<float>(), 0.5f);
  // the RoPE dims come back bit for bit; normal values within e4m3's half step (2^-4 relative)
  EXPECT_TRUE(at::equal(bf16.narrow(1, 512, 64), rope));
  const at::Tensor err = (back[1].narrow(0, 0, 512) - latent[1]).abs();
  EXPECT_TRUE((err <= latent[1].abs() * 0.0625 + 1e-3).all().item<bool>()) << err.max();
  // leading dims are kept; a kv_lora_rank that is not a multiple of 128 is refused
  EXPECT_EQ(mla_cache_dequantize(rows.view({2, 1, 656}), 512, at::kFloat).sizes(),
            (at::IntArrayRef{2, 1, 576}));
  EXPECT_THROW(mla_cache_quantize(at::zeros({1, 64}), at::zeros({1, 16})), Error);
}

// The model's reference decode reads FP8 pages through model::gather_padded_pages then
// kernels::mla_cache_entries: exactly the reference over the whole cache dequantised to BF16 first
// (gathering and dequantising commute; masked slots, random bytes here, become zeros), on the CPU.
TEST(MlaCacheFp8, ReferenceOverFp8PagesEqualsReferenceOverDequantisedPages) {
  at::Tensor fp8 = at::randint(0, 256, {6, 64, 656}, at::kByte);  // garbage everywhere
  const at::Tensor flat = fp8.view({-1, 656});
  const at::Tensor tables = at::tensor({3, 1, 0, 5, 2, 4}, at::kLong).view({2, 3});
  const at::Tensor lens = at::tensor({150, 70}, at::kLong);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < lens[b].item<std::int64_t>(); ++t) {
      const std::int64_t slot = tables[b][t / 64].item<std::int64_t>() * 64 + t % 64;
      flat[slot].copy_(mla_cache_quantize(at::randn({1, 512}), at::randn({1, 64}))[0]);
    }
  const at::Tensor valid = at::arange(150, at::kLong).unsqueeze(0) < lens.unsqueeze(1);
  const at::Tensor query = at::randn({2, 16, 576}).to(at::kBFloat16);
  const at::Tensor over_fp8 = mla_decode_reference(
      query, mla_cache_entries(model::gather_padded_pages(fp8, tables, valid), 512, at::kBFloat16),
      valid, 0.08, 512);
  const at::Tensor dequantised = mla_cache_dequantize(fp8, 512, at::kBFloat16);
  const at::Tensor over_bf16 = mla_decode_reference(
      query, model::gather_padded_pages(dequantised, tables, valid), valid, 0.08, 512);
  EXPECT_FALSE(over_fp8.isnan().any().item<bool>());
  EXPECT_TRUE(at::equal(over_fp8, over_bf16));
}

// The kernel over FP8 pages (NaN bytes in every unused slot) against the FP64 oracle and the
// model's reference path over the same pages dequantised (kernels::mla_cache_dequantize), with
// the BF16 test's tolerances: 16 to 128 heads (64 and 128 on both kernels: the wgmma one on an
// H100/H200), ragged lengths, one range, ranges combined in clusters (2-8), by the last CTA (9, 16)
// and by the combine kernel (17; every split count > 1 with the wgmma kernel).
TEST(MlaDecodeCuda, Fp8CacheMatchesReferenceOverDequantisedCache) {
  PONDER_REQUIRE_GPU();
  const double scale = 0.08;
  for (const std::int64_t heads : {16, 32, 64, 128})
    for (const auto& lengths : std::vector<std::vector<std::int64_t>>{
             {1, 63, 64, 65, 200}, {1000, 3000, 17, 129}, {33, 4096}}) {
      Case c = make_case(lengths, heads);
      const at::Tensor fp8 = to_fp8(c);
      ASSERT_TRUE(mla_decode_supported(c.query, fp8));
      const at::Tensor want = oracle(c, scale), model = model_path(c, scale);
      for (const std::int64_t splits : {0, 1, 2, 5, 8, 9, 16, 17})
        for (const bool wgmma : {true, false}) {
          if (!wgmma && heads % 64 != 0) continue;  // the same kernel either way
          const at::Tensor got =
              mla_decode_cuda(c.query, fp8, c.tables, c.lens, scale, splits, true, wgmma);
          const std::string what = "heads " + std::to_string(heads) + " first length " +
                                   std::to_string(lengths[0]) + " splits " +
                                   std::to_string(splits) + (wgmma ? "" : " mma.sync");
          ASSERT_FALSE(got.isnan().any().item<bool>()) << what;
          EXPECT_LT(relative_error(got, want), 1e-2) << what;
          EXPECT_LT(relative_error(got, model), 3e-2) << what;
        }
    }
}

// One token per sequence: P = 1, so every head's output is the token's dequantised latent, bit for
// bit (mla_cache_dequantize's rounding of fp8 * scale). The rows hold all 254 finite e4m3 codes
// (subnormals and signed zeros included), rotated per sequence, under the four scales
// `scales_of(b)` of sequence b; each sequence reads its own page of a cache that holds NaN codes
// everywhere else.
void expect_one_token_exact(const std::function<at::Tensor(std::int64_t)>& scales_of,
                            const std::vector<std::int64_t>& heads_list) {
  const std::int64_t batch = 6;
  at::Tensor codes = at::arange(512, at::kLong).remainder(256).to(at::kByte);
  codes.masked_fill_((codes == 0x7F).logical_or(codes == 0xFF), 0);  // the NaN codes
  at::Tensor rows = at::zeros({batch, 656}, at::kByte);
  for (std::int64_t b = 0; b < batch; ++b) {
    rows[b].narrow(0, 0, 512).copy_(codes.roll(37 * b));
    rows[b].narrow(0, 512, 16).copy_(scales_of(b).to(at::kFloat).view(at::kByte));
    rows[b].narrow(0, 528, 128).copy_(at::randn({64}).to(at::kBFloat16).view(at::kByte));
  }
  at::Tensor cache = at::full({2 * batch, 64, 656}, 0x7F, at::kByte);  // NaN everywhere else
  at::Tensor tables = at::zeros({batch, 1}, at::kLong);
  for (std::int64_t b = 0; b < batch; ++b) {
    tables[b][0] = 2 * b + 1;
    cache[2 * b + 1][0].copy_(rows[b]);
  }
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const at::Tensor want = mla_cache_dequantize(rows, 512, at::kBFloat16).narrow(1, 0, 512);
  for (const std::int64_t heads : heads_list) {
    const at::Tensor query = at::randn({batch, heads, 576}, cuda.dtype(at::kBFloat16));
    const at::Tensor got = mla_decode_cuda(query, cache.to(at::kCUDA), tables.to(at::kCUDA),
                                           at::ones({batch}, at::kLong).to(at::kCUDA), 0.08);
    for (std::int64_t b = 0; b < batch; ++b)
      EXPECT_TRUE(at::equal(got[b].cpu(), want[b].unsqueeze(0).expand({heads, 512})))
          << "heads " << heads << " sequence " << b;
  }
}

// Power-of-two scales (exact products): 16 heads (the mma.sync kernel) and 128 (the wgmma kernel
// on an H100/H200, converting in shared memory).
TEST(MlaDecodeCuda, Fp8LatentOfOneTokenComesBackExactly) {
  PONDER_REQUIRE_GPU();
  expect_one_token_exact(
      [](std::int64_t b) {
        const int e = static_cast<int>(b);
        return at::tensor(
            {std::ldexp(1.f, -3 - e), 1.f, std::ldexp(1.f, 5 + e), std::ldexp(1.f, -10)});
      },
      {16, 128});
}

// The wgmma kernel's conversion rounds fp8 * scale as the reference does at any scale: random
// significands (rounded products) times 2^-100 to 2^45 (2^8 and up: scale * 2^120 overflows FP32,
// the converter's second route), 128 and 256 heads.
TEST(MlaDecodeCuda, Fp8LatentOfOneTokenRoundsAsTheReferenceAtAnyScale) {
  PONDER_REQUIRE_GPU();
  expect_one_token_exact(
      [](std::int64_t b) {
        const at::Tensor exponents = at::tensor({-100, -7, 8, 40}, at::kFloat) + b;
        return (at::rand({4}) + 1) * at::pow(2.0, exponents);
      },
      {128, 256});
}

TEST(MlaDecodeCuda, MatchesOracleAndModelPath) {
  PONDER_REQUIRE_GPU();
  const double scale = 0.08;
  for (const std::int64_t heads : {16, 32, 64, 128})
    for (const auto& lengths : std::vector<std::vector<std::int64_t>>{
             {1, 63, 64, 65, 200}, {1000, 3000, 17, 129}, {4096}})
      for (const std::int64_t splits : {0, 1, 5})
        for (const bool wgmma : {true, false}) {
          if (!wgmma && heads % 64 != 0) continue;  // the same kernel either way
          const Case c = make_case(lengths, heads);
          const at::Tensor got =
              mla_decode_cuda(c.query, c.cache, c.tables, c.lens, scale, splits, true, wgmma);
          const at::Tensor want = oracle(c, scale);
          const std::string what = "heads " + std::to_string(heads) + " batch " +
                                   std::to_string(lengths.size()) + " first length " +
                                   std::to_string(lengths[0]) + " splits " +
                                   std::to_string(splits) + (wgmma ? "" : " mma.sync");
          ASSERT_FALSE(got.isnan().any().item<bool>()) << what;
          // BF16 probabilities and output from FP32 scores. The model path also rounds the
          // scores to BF16 first, which costs it up to ~1.5% (seen at 4096 tokens).
          const at::Tensor model = model_path(c, scale);
          EXPECT_LT(relative_error(got, want), 1e-2) << what;
          EXPECT_LT(relative_error(model, want), 3e-2) << what;
          EXPECT_LT(relative_error(got, model), 3e-2) << what;
        }
}

TEST(MlaDecodeCuda, CombinesRangesOfManySequencesInOneLaunch) {
  // 64 ragged sequences: many CTAs race to finish each sequence's ranges. 2 ranges combine
  // inside clusters; 4 and 8 would need more clusters than an H200 holds at once (62 of 4, 30 of
  // 8), so there, as up to 16 ranges, the last CTA combines them; 17 takes the combine kernel.
  PONDER_REQUIRE_GPU();
  std::vector<std::int64_t> lengths;
  for (std::int64_t b = 0; b < 64; ++b) lengths.push_back(1 + b * 997 % 2048);
  const Case c = make_case(lengths, 16);
  const at::Tensor want = oracle(c, 0.08);
  for (const std::int64_t splits : {0, 2, 4, 8, 16, 17}) {
    const at::Tensor got = mla_decode_cuda(c.query, c.cache, c.tables, c.lens, 0.08, splits);
    ASSERT_FALSE(got.isnan().any().item<bool>()) << "splits " << splits;
    for (std::int64_t b = 0; b < 64; ++b)
      EXPECT_LT(relative_error(got[b], want[b]), 1e-2) << "splits " << splits << " sequence " << b;
  }
}

TEST(MlaDecodeCuda, EveryCombinePathOverShortAndRaggedContexts) {
  // 16 heads, 14 sequences of 1-1000 tokens (1-32 tiles, so ranges with one tile, a partial
  // tile or none) at 1-24 ranges: 2-8 ranges combine inside a cluster (the device holds 14
  // clusters of up to 8), 9 and 16 by the last CTA to finish, 17 and 24 by the combine kernel.
  // Three calls back to back (no sync), each against the FP64 oracle.
  PONDER_REQUIRE_GPU();
  const std::vector<std::int64_t> lengths = {1,   32,  33,  64,  65,  96,  127,
                                             128, 129, 200, 255, 256, 257, 1000};
  const Case c = make_case(lengths, 16);
  const at::Tensor want = oracle(c, 0.08);
  for (const std::int64_t splits : {1, 2, 3, 4, 8, 9, 16, 17, 24}) {
    std::vector<at::Tensor> got;
    for (int call = 0; call < 3; ++call)
      got.push_back(mla_decode_cuda(c.query, c.cache, c.tables, c.lens, 0.08, splits, false));
    for (int call = 0; call < 3; ++call) {
      ASSERT_FALSE(got[call].isnan().any().item<bool>()) << "splits " << splits;
      for (std::size_t b = 0; b < lengths.size(); ++b)
        EXPECT_LT(relative_error(got[call][b], want[b]), 1e-2)
            << "splits " << splits << " call " << call << " length " << lengths[b];
    }
  }
}

TEST(MlaDecodeCuda, BackToBackCallsAndGraphReplaysShareTheCounters) {
  // Calls queued with no host sync between them (each may be scheduled while the previous one
  // runs) share one buffer of arrival and tile counters that every call leaves zero: different
  // batches, 16 and 32 heads, ragged lengths 1..N and 0-40 ranges (many of them empty) in a row,
  // then the same calls recorded as a CUDA graph and replayed twice.
  PONDER_REQUIRE_GPU();
  std::vector<Case> cases;
  std::vector<at::Tensor> wants;
  const std::vector<std::int64_t> splits = {0, 16, 3, 1, 7, 17, 2, 40, 4};
  for (std::size_t i = 0; i < splits.size(); ++i) {
    std::vector<std::int64_t> lengths;
    const auto batch = static_cast<std::int64_t>(5 + 23 * i % 40);
    for (std::int64_t b = 0; b < batch; ++b) lengths.push_back(1 + (b + 7 * i) * 389 % 1300);
    cases.push_back(make_case(lengths, i % 2 == 0 ? 16 : 32));
    wants.push_back(oracle(cases.back(), 0.08));
  }
  std::vector<at::Tensor> outs(cases.size());
  const auto call_all = [&] {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      outs[i] = mla_decode_cuda(c.query, c.cache, c.tables, c.lens, 0.08, splits[i], false);
    }
  };
  const auto check = [&](const std::string& when) {
    for (std::size_t i = 0; i < cases.size(); ++i) {
      ASSERT_FALSE(outs[i].isnan().any().item<bool>()) << when << " call " << i;
      for (std::int64_t b = 0; b < outs[i].size(0); ++b)
        EXPECT_LT(relative_error(outs[i][b], wants[i][b]), 1e-2)
            << when << " call " << i << " sequence " << b;
    }
  };
  call_all();
  check("eager");
  CudaGraph graph;
  graph.capture(call_all, CudaGraph::new_pool());
  for (const char* when : {"replay 1", "replay 2"}) {
    for (at::Tensor& out : outs) out.fill_(NAN);
    graph.replay();
    check(when);
  }
}

TEST(MlaDecodeCuda, ManyHeadsOverRaggedPagesAndRanges) {
  // The wgmma kernel's edges: 1 token, partial and exact last pages (NaN behind them in the
  // cache), more ranges than a sequence has pages (empty ranges), 64-256 heads (1-4 CTAs per
  // range), and 24 ragged sequences at once (more CTAs than SMs at 40 ranges); BF16 pages and FP8
  // ones (NaN codes behind them; the oracle over the pages dequantised).
  PONDER_REQUIRE_GPU();
  std::vector<std::int64_t> ragged;
  for (std::int64_t b = 0; b < 24; ++b) ragged.push_back(1 + b * 997 % 1500);
  for (const bool fp8 : {false, true})
    for (const std::int64_t heads : {64, 128, 256})
      for (const auto& lengths :
           std::vector<std::vector<std::int64_t>>{{1, 2, 63, 64, 65, 127, 128, 129, 700}, ragged})
        for (const std::int64_t splits : {0, 1, 2, 3, 40}) {
          Case c = make_case(lengths, heads);
          const at::Tensor pages = fp8 ? to_fp8(c) : c.cache;
          const at::Tensor got = mla_decode_cuda(c.query, pages, c.tables, c.lens, 0.08, splits);
          const at::Tensor want = oracle(c, 0.08);
          const std::string what =
              std::string(fp8 ? "fp8" : "bf16") + " heads " + std::to_string(heads) + " batch " +
              std::to_string(lengths.size()) + " splits " + std::to_string(splits);
          ASSERT_FALSE(got.isnan().any().item<bool>()) << what;
          for (std::size_t b = 0; b < lengths.size(); ++b)
            EXPECT_LT(relative_error(got[b], want[b]), 1e-2) << what << " length " << lengths[b];
        }
}

// Scores that rise (or fall) with the token position: the 64 RoPE dims of every query are 1 and a
// key's are 4 t / n (or 4 (n - t) / n) at position t of n, which outweighs the random rest.
void ramp_scores(Case& c, bool rising) {
  c.query.narrow(2, 512, 64).fill_(1.0);
  const at::Tensor flat = c.cache.view({-1, 576});
  for (std::int64_t b = 0; b < c.query.size(0); ++b) {
    const std::int64_t n = c.lens[b].item<std::int64_t>();
    const at::Tensor t = at::arange(n, at::TensorOptions().dtype(at::kDouble));
    const at::Tensor ramp = (rising ? t : n - t) * (4.0 / static_cast<double>(n));
    for (std::int64_t j = 0; j < (n + 63) / 64; ++j) {
      const std::int64_t m = std::min<std::int64_t>(64, n - 64 * j);
      flat.narrow(0, c.tables[b][j].item<std::int64_t>() * 64, m)
          .narrow(1, 512, 64)
          .copy_(ramp.narrow(0, 64 * j, m).unsqueeze(1).expand({m, 64}));
    }
  }
}

TEST(MlaDecodeCuda, ManyHeadsWithMaximaMovingOnMostPagesOrNone) {
  // The wgmma kernel rescales its outputs only where a row's running maximum moved: rising scores
  // move it on most pages, falling ones hardly ever after the first (the rescale skipped); a
  // negative scale turns one into the other. Partial last pages and several ranges included.
  PONDER_REQUIRE_GPU();
  for (const bool rising : {true, false})
    for (const double scale : {0.08, -0.08})
      for (const std::int64_t splits : {0, 1, 3}) {
        Case c = make_case({1, 700, 576, 1500, 64}, 128);
        ramp_scores(c, rising);
        const at::Tensor got = mla_decode_cuda(c.query, c.cache, c.tables, c.lens, scale, splits);
        const at::Tensor want = oracle(c, scale);
        const std::string what = std::string(rising ? "rising" : "falling") + " scale " +
                                 std::to_string(scale) + " splits " + std::to_string(splits);
        ASSERT_FALSE(got.isnan().any().item<bool>()) << what;
        for (std::int64_t b = 0; b < c.query.size(0); ++b)
          EXPECT_LT(relative_error(got[b], want[b]), 1e-2) << what << " sequence " << b;
      }
}

// DeepSeek YaRN rotary tables (V2-Lite's scaling) for the given positions, on the GPU.
model::RotaryTables yarn_tables(const at::Tensor& positions) {
  return model::Rotary(yarn_config(), 64).tables(positions.to(at::kCUDA));
}

// The engine's query of one decode step from its pieces as MlaAttention::paged had them before:
// the absorbing einsum, the RoPE kernel into a tensor of its own, the cat.
at::Tensor query_by_cat(const at::Tensor& q_nope, const at::Tensor& w_uk, const at::Tensor& q_rope,
                        const model::RotaryTables& t) {
  return at::cat(
      {at::einsum("thd,hdc->thc", {q_nope, w_uk}), rope_cuda(q_rope, t.cos, t.sin, true)}, -1);
}

TEST(MlaDecodeQuery, EqualsTheCatOfTheAbsorbedLatentAndTheRotatedRopeBitForBit) {
  // q_nope and the unrotated q_rope as the engine has them (views of the projection [D, h, 192]),
  // W_UK a slice of kv_b_proj's weight [h, 128 + 128, 512]; the query is poisoned first, so an
  // unwritten element shows up as NaN.
  PONDER_REQUIRE_GPU();
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  for (const std::int64_t heads : {16, 128})
    for (const std::int64_t batch : {1, 5, 64, 256}) {
      const at::Tensor q = at::randn({batch, heads, 192}, bf16);
      const at::Tensor w_uk = (at::randn({heads, 256, 512}, bf16) * 0.05).narrow(1, 0, 128);
      const model::RotaryTables t = yarn_tables(at::randint(0, 20000, {batch}, at::kLong));
      const at::Tensor q_nope = q.narrow(-1, 0, 128), q_rope = q.narrow(-1, 128, 64);
      at::Tensor query = at::full({batch, heads, 576}, NAN, bf16);
      mla_decode_query_cuda(query, q_nope, w_uk, q_rope, t.cos, t.sin);
      const at::Tensor want = query_by_cat(q_nope, w_uk, q_rope, t);
      EXPECT_TRUE(query.equal(want))
          << "heads " << heads << " batch " << batch << ": largest difference "
          << (query.to(at::kFloat) - want.to(at::kFloat)).abs().max().item<float>();
    }
  const at::Tensor q = at::randn({4, 16, 192}, bf16), w_uk = at::randn({16, 128, 512}, bf16);
  const model::RotaryTables t = yarn_tables(at::arange(4, at::kLong));
  const at::Tensor strided = at::empty({4, 16, 1152}, bf16).narrow(-1, 0, 576);
  EXPECT_THROW(mla_decode_query_cuda(strided, q.narrow(-1, 0, 128), w_uk, q.narrow(-1, 128, 64),
                                     t.cos, t.sin),
               Error);
}

// The engine's decode step over a case (MlaAttention::paged and decode): each sequence's new token
// scattered into its last slot, then the query, assembled in place by mla_decode_query_cuda (a
// decode-only step: its RoPE kernel triggers the kernel, which reads its first tile early) or by
// the einsum, RoPE and cat (a step with prefill rows, and the engine before), then the kernel with
// or without the early first tile the engine asks for.
struct EngineStep {
  Case c;
  at::Tensor slots, rows, q, w_uk;
  model::RotaryTables rot;

  at::Tensor run(bool assembled, bool early) {
    model::scatter_pages(c.cache, slots, rows);
    const at::Tensor q_nope = q.narrow(-1, 0, 128), q_rope = q.narrow(-1, 128, 64);
    if (assembled) {
      c.query = at::empty({q.size(0), 16, 576}, q.options());
      mla_decode_query_cuda(c.query, q_nope, w_uk, q_rope, rot.cos, rot.sin);
    } else {
      c.query = query_by_cat(q_nope, w_uk, q_rope, rot);
    }
    return mla_decode_cuda(c.query, c.cache, c.tables, c.lens, 0.08, 0, false, true, early);
  }
  void refill() {
    rows.normal_();
    q.normal_();
  }
};

EngineStep make_engine_step(const std::vector<std::int64_t>& lengths) {
  EngineStep s{make_case(lengths, 16)};
  const at::Tensor tables = s.c.tables.to(at::kCPU);
  std::vector<std::int64_t> slots;
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    const std::int64_t last = lengths[b] - 1;
    slots.push_back(tables[static_cast<std::int64_t>(b)][last / 64].item<std::int64_t>() * 64 +
                    last % 64);
  }
  const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto batch = static_cast<std::int64_t>(lengths.size());
  s.slots = at::tensor(slots, at::TensorOptions().dtype(at::kLong)).to(at::kCUDA);
  s.rows = at::randn({batch, 576}, bf16);
  s.q = at::randn({batch, 16, 192}, bf16);
  s.w_uk = (at::randn({16, 256, 512}, bf16) * 0.05).narrow(1, 0, 128);
  s.rot = yarn_tables(at::tensor(lengths, at::TensorOptions().dtype(at::kLong)) - 1);
  return s;
}

TEST(MlaDecodeCuda, EarlyFirstTileEqualsTheDefaultInTheEnginesStepAndGraphReplays) {
  // Batch 64 (four ranges, combined by the last CTA) and 128 (two, in clusters), ragged lengths
  // from 1 token (whose new token lies in the first tile, read early): the engine's decode-only
  // step (query assembled in place, the RoPE kernel triggering the early first tile) gives the
  // earlier engine's step (einsum, RoPE, cat, default kernel) bit for bit, query and output,
  // eagerly and in replays of the recorded step whose new tokens and queries change between
  // replays; the early tile behind the cat (steps with prefill rows) too; and the FP64 oracle's
  // output within 1e-2.
  PONDER_REQUIRE_GPU();
  for (const std::int64_t batch : {64, 128}) {
    std::vector<std::int64_t> lengths;
    for (std::int64_t b = 0; b < batch; ++b) lengths.push_back(1 + b * 397 % 1300);
    EngineStep s = make_engine_step(lengths);
    const at::Tensor early = s.run(true, true), query = s.c.query;
    const at::Tensor early_cat = s.run(false, true);
    const at::Tensor before = s.run(false, false);
    EXPECT_TRUE(query.equal(s.c.query)) << "eager query, batch " << batch;
    EXPECT_TRUE(early.equal(before)) << "eager, batch " << batch;
    EXPECT_TRUE(early_cat.equal(before)) << "eager, behind the cat, batch " << batch;
    const at::Tensor want = oracle(s.c, 0.08);
    for (std::int64_t b = 0; b < batch; ++b)
      EXPECT_LT(relative_error(early[b], want[b]), 1e-2) << "batch " << batch << " sequence " << b;
    at::Tensor replayed;
    CudaGraph graph;
    graph.capture([&] { replayed = s.run(true, true); }, CudaGraph::new_pool());
    const at::Tensor graph_query = s.c.query;  // the recorded step's
    for (int r = 1; r <= 3; ++r) {
      s.refill();
      replayed.fill_(NAN);
      graph_query.fill_(NAN);
      graph.replay();
      const at::Tensor want_out = s.run(false, false);
      EXPECT_TRUE(graph_query.equal(s.c.query)) << "replay " << r << " query, batch " << batch;
      EXPECT_TRUE(replayed.equal(want_out)) << "replay " << r << ", batch " << batch;
    }
  }
}

#ifdef PONDER_TEST_LATE_WRITER
TEST(MlaDecodeCuda, DefaultPathWaitsForAKernelThatWritesThePagesLate) {
  // Just before the decode, a kernel lets it start at once (its PDL trigger comes first) and
  // rewrites every page 50 us later. The default path reads nothing before its PDL wait, so it
  // must see the new pages. The early first tile, which a caller must not ask for behind such a
  // kernel, reads them before the writes wherever the device overlaps the two kernels (a tool
  // that serialises kernels shows no overlap): its error is printed as evidence that this test
  // tells an early read from a waiting one.
  PONDER_REQUIRE_GPU();
  Case c = make_case({20, 300, 1000, 64 * 9, 33}, 16);
  const at::Tensor old_pages = c.cache.clone();
  const at::Tensor new_pages = at::where(c.cache.isnan(), c.cache, at::randn_like(c.cache));
  Case rewritten = c;
  rewritten.cache = new_pages;
  const at::Tensor want = oracle(rewritten, 0.08);
  const auto decode_behind_writer = [&](bool early) {
    c.cache.copy_(old_pages);
    check_launch(testing::launch_late_copy(c.cache.data_ptr(), new_pages.data_ptr(),
                                           c.cache.nbytes(), 50'000, current_stream()),
                 "late copy");
    return mla_decode_cuda(c.query, c.cache, c.tables, c.lens, 0.08, 0, false, true, early);
  };
  const at::Tensor plain = decode_behind_writer(false);
  for (std::int64_t b = 0; b < plain.size(0); ++b)
    EXPECT_LT(relative_error(plain[b], want[b]), 1e-2) << "sequence " << b;
  const at::Tensor early = decode_behind_writer(true);
  double worst = 0;
  for (std::int64_t b = 0; b < early.size(0); ++b)
    worst = std::max(worst, relative_error(early[b], want[b]));
  std::cout << "early first tile behind the late writer: largest rel err " << worst
            << (worst > 1e-2 ? " (it read old pages: the kernels overlapped)\n"
                             : " (no overlap seen)\n");
}
#endif

TEST(MlaDecodeCuda, RejectsContextsBeyondTheTable) {
  PONDER_REQUIRE_GPU();
  const Case c = make_case({100}, 16);
  EXPECT_THROW(mla_decode_cuda(c.query, c.cache, c.tables, c.lens * 100, 0.1), std::exception);
}

}  // namespace
}  // namespace ponder::kernels
