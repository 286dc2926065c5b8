// Distillation losses and the teacher logit cache: divergences against hand-computed values and a
// PyTorch float64 reference (values and gradients), the cache's round trip in both dtypes, and
// clear errors on corrupt, truncated or mismatched cache files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "core/json_file.h"
#include "tests/common/test_util.h"
#include "train/distill_loss.h"
#include "train/logit_cache.h"

namespace ponder::train {
namespace {

at::Tensor log_probs(std::vector<double> p) {
  return at::tensor(p, at::kDouble).log().to(at::kFloat).unsqueeze(0);
}

double divergence_of(const std::vector<double>& teacher, const std::vector<double>& student,
                     std::int64_t k, Divergence d) {
  return distill_divergence(log_probs(student), top_k_of(log_probs(teacher), k), d).item<double>();
}

TEST(DistillLoss, MatchesHandComputedBucketedDivergences) {
  // Teacher (0.5, 0.3, 0.2), student (0.25, 0.25, 0.5); k = 2 keeps tokens 0 and 1, the tail
  // bucket holds token 2: teacher buckets (0.5, 0.3, 0.2), student buckets (0.25, 0.25, 0.5).
  const std::vector<double> t = {0.5, 0.3, 0.2}, s = {0.25, 0.25, 0.5};
  const double forward = 0.5 * std::log(2.0) + 0.3 * std::log(1.2) + 0.2 * std::log(0.4);
  const double reverse = 0.25 * std::log(0.5) + 0.25 * std::log(0.25 / 0.3) + 0.5 * std::log(2.5);
  const double jsd = 0.5 * (0.5 * std::log(0.5 / 0.375) + 0.3 * std::log(0.3 / 0.275) +
                            0.2 * std::log(0.2 / 0.35)) +
                     0.5 * (0.25 * std::log(0.25 / 0.375) + 0.25 * std::log(0.25 / 0.275) +
                            0.5 * std::log(0.5 / 0.35));
  EXPECT_NEAR(divergence_of(t, s, 2, Divergence::kForwardKl), forward, 1e-6);
  EXPECT_NEAR(divergence_of(t, s, 2, Divergence::kReverseKl), reverse, 1e-6);
  EXPECT_NEAR(divergence_of(t, s, 2, Divergence::kJsd), jsd, 1e-6);
  // k = 1: buckets (0.5, 0.5) against (0.25, 0.75).
  EXPECT_NEAR(divergence_of(t, s, 1, Divergence::kForwardKl),
              0.5 * std::log(2.0) + 0.5 * std::log(0.5 / 0.75), 1e-6);
  // Identical distributions diverge by nothing, whatever k.
  for (const auto d : {Divergence::kForwardKl, Divergence::kReverseKl, Divergence::kJsd})
    for (std::int64_t k = 1; k <= 3; ++k) EXPECT_NEAR(divergence_of(t, t, k, d), 0, 1e-6);
  const auto top = top_k_of(log_probs(t), 2);
  EXPECT_EQ(top.ids[0][0].item<std::int64_t>(), 0);
  EXPECT_EQ(top.ids[0][1].item<std::int64_t>(), 1);
  EXPECT_NEAR(top.tail[0].item<double>(), 0.2, 1e-6);
  EXPECT_THROW(parse_divergence("kl"), Error);
  EXPECT_THROW(top_k_of(log_probs(t), 4), Error);
}

TEST(DistillLoss, ValuesAndGradientsMatchPyTorch) {
  testing_util::ScratchDir dir("distill_loss");
  at::manual_seed(3);
  const std::int64_t positions = 5, vocab = 40;
  const at::Tensor teacher = at::randn({positions, vocab}) * 3;
  const at::Tensor student = at::randn({positions, vocab}) * 2;
  const auto rows = [](const at::Tensor& t) {
    std::vector<std::vector<double>> out;
    for (std::int64_t i = 0; i < t.size(0); ++i) {
      const at::Tensor row = t[i].to(at::kDouble).contiguous();
      out.emplace_back(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
    }
    return out;
  };
  const std::vector<std::int64_t> ks = {vocab, 8, 1};
  std::ofstream(dir / "in.json") << nlohmann::json{
      {"teacher_logits", rows(teacher)},
      {"student_logits", rows(student)},
      {"ks", ks}}.dump();
  const auto expected = nlohmann::json::parse(testing_util::run_checked(
      testing_util::python() + " " + DISTILL_LOSS_ORACLE + " " + (dir / "in.json").string()));
  const std::map<std::string, Divergence> kinds = {{"forward_kl", Divergence::kForwardKl},
                                                   {"reverse_kl", Divergence::kReverseKl},
                                                   {"jsd", Divergence::kJsd}};
  for (const auto k : ks)
    for (const auto& [name, kind] : kinds) {
      const at::Tensor logits = student.clone().requires_grad_(true);
      const at::Tensor values =
          distill_divergence(logits.log_softmax(-1), top_k_of(teacher.log_softmax(-1), k), kind);
      values.mean().backward();
      const auto& ref = expected[std::to_string(k)][name];
      const at::Tensor want = at::tensor(ref["values"].get<std::vector<double>>());
      std::vector<double> grad;
      for (const auto& row : ref["grad"])
        for (double g : row) grad.push_back(g);
      EXPECT_LT((values.to(at::kDouble) - want).abs().max().item<double>(), 2e-5)
          << name << " k=" << k;
      EXPECT_LT(
          (logits.grad().to(at::kDouble).reshape(-1) - at::tensor(grad)).abs().max().item<double>(),
          2e-6)
          << name << " k=" << k;
    }
}

LogitCache sample_cache() {
  at::manual_seed(5);
  LogitCache cache{.vocab_size = 50,
                   .tokenizer = "0123456789abcdef",
                   .teacher = "/models/t",
                   .meta = {{"n", 2}}};
  cache.prompts = {{1, 2, 3}, {4, 5}, {6}};
  cache.responses = {{7, 8}, {9, 10, 11, 12}, {13}};
  const auto top = top_k_of((at::randn({7, 50}) * 4).log_softmax(-1), 6);
  cache.topk = top;
  return cache;
}

TEST(LogitCache, RoundTripsInBothDtypes) {
  testing_util::ScratchDir dir("logit_cache");
  const LogitCache cache = sample_cache();
  for (const std::string dtype : {"float32", "float16"}) {
    write_logit_cache(dir / "c.bin", cache, dtype);
    const LogitCache back = read_logit_cache(dir / "c.bin");
    EXPECT_EQ(back.prompts, cache.prompts);
    EXPECT_EQ(back.responses, cache.responses);
    EXPECT_EQ(back.vocab_size, 50);
    EXPECT_EQ(back.tokenizer, cache.tokenizer);
    EXPECT_EQ(back.teacher, cache.teacher);
    EXPECT_EQ(back.meta, cache.meta);
    EXPECT_TRUE(at::equal(back.topk.ids, cache.topk.ids));
    EXPECT_TRUE(at::equal(back.topk.tail, cache.topk.tail));
    const at::Tensor expected =
        dtype == "float32" ? cache.topk.logprobs : cache.topk.logprobs.to(at::kHalf).to(at::kFloat);
    EXPECT_TRUE(at::equal(back.topk.logprobs, expected)) << dtype;
    EXPECT_EQ(back.row_offsets(), (std::vector<std::int64_t>{0, 2, 6, 7}));
  }
  // float16 halves the log-prob array: 7 positions x 6 values x 2 bytes fewer.
  write_logit_cache(dir / "a.bin", cache, "float32");
  write_logit_cache(dir / "b.bin", cache, "float16");
  EXPECT_EQ(std::filesystem::file_size(dir / "a.bin") - std::filesystem::file_size(dir / "b.bin"),
            7u * 6u * 2u);
}

void expect_error(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(LogitCache, CorruptTruncatedOrMismatchedFilesFailClearly) {
  testing_util::ScratchDir dir("logit_cache_bad");
  const auto path = dir / "c.bin";
  write_logit_cache(path, sample_cache(), "float16");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const auto write = [&](const std::string& content) {
    std::ofstream(path, std::ios::binary) << content;
  };
  std::string flipped = bytes;
  flipped[flipped.size() - 10] ^= 0x40;
  write(flipped);
  expect_error([&] { read_logit_cache(path); }, "checksum mismatch");
  write(bytes.substr(0, bytes.size() - 3));
  expect_error([&] { read_logit_cache(path); }, "checksum mismatch");
  write(bytes.substr(0, 20));
  expect_error([&] { read_logit_cache(path); }, "header is truncated");
  write("not a cache at all");
  expect_error([&] { read_logit_cache(path); }, "bad magic");
  expect_error([&] { read_logit_cache(dir / "missing.bin"); }, "cannot read");
  write(bytes);
  const LogitCache cache = read_logit_cache(path);
  expect_error([&] { check_cache_matches(cache, path, 64, cache.tokenizer); },
               "vocabulary of 50 tokens, the student has 64");
  expect_error([&] { check_cache_matches(cache, path, 50, "ffffffffffffffff"); },
               "must share a tokenizer");
  EXPECT_NO_THROW(check_cache_matches(cache, path, 50, cache.tokenizer));
  expect_error([&] { write_logit_cache(path, cache, "bfloat16"); }, "float16 or float32");
}

}  // namespace
}  // namespace ponder::train
