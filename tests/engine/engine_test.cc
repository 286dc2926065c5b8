#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "core/json_file.h"
#include "engine/rollout_engine.h"
#include "model/init_model.h"
#include "tests/common/test_util.h"

namespace ponder::engine {
namespace {

using testing_util::ScratchDir;

std::vector<std::vector<std::int64_t>> prompts() {
  return {{5, 17, 99, 1024, 7, 3, 250, 11, 42, 8}, {8, 9, 10}, {300, 301, 302, 303, 304, 305, 306}};
}

// The training forward's exact log-probabilities of a completion's tokens after its prompt.
at::Tensor recompute_logprobs(model::CausalLM& lm, const std::vector<std::int64_t>& prompt_ids,
                              const std::vector<std::int64_t>& completion) {
  std::vector<std::int64_t> full = prompt_ids;
  full.insert(full.end(), completion.begin(), completion.end());
  const auto n = static_cast<std::int64_t>(full.size());
  const at::Tensor ids = at::tensor(full, at::kLong);
  const at::Tensor hidden =
      lm.forward_hidden(ids, at::arange(n, at::kLong), at::tensor(std::vector<std::int64_t>{0, n}));
  const auto prompt = static_cast<std::int64_t>(prompt_ids.size());
  return lm.token_logprobs(hidden.narrow(0, prompt - 1, n - prompt),
                           ids.narrow(0, prompt, n - prompt));
}

nlohmann::json family(const std::string& name) {
  auto j = model::preset_config(name == "qwen2" ? "tiny-qwen2" : "tiny-mla");
  if (name == "deepseek_v2")
    j.update({{"model_type", "deepseek_v2"},
              {"q_lora_rank", nullptr},
              {"scoring_func", "softmax"},
              {"topk_method", "group_limited_greedy"},
              {"norm_topk_prob", false}});
  return j;
}

class GreedyVsHf : public ::testing::TestWithParam<std::string> {};

TEST_P(GreedyVsHf, TokensMatchTransformersGenerate) {
  ScratchDir dir("greedy_" + GetParam());
  model::init_model(family(GetParam()), dir / "m", {.seed = 21});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(
      *lm, nullptr,
      {.block_size = 4, .num_blocks = 64, .max_batch_tokens = 8, .show_progress = false});
  std::vector<Request> requests;
  for (const auto& p : prompts())
    requests.push_back({p, 1, {.temperature = 0, .max_tokens = 12, .ignore_eos = true}});
  const auto completions = engine.generate(requests);
  std::ofstream(dir / "seqs.json")
      << nlohmann::json{{"sequences", prompts()}, {"new_tokens", 12}}.dump();
  testing_util::run_checked(testing_util::python() + " " + HF_ORACLE + " greedy " +
                            (dir / "m").string() + " " + (dir / "seqs.json").string() + " " +
                            (dir / "hf.json").string() + " 2>/dev/null");
  const auto hf = read_json_file(dir / "hf.json");
  for (std::size_t i = 0; i < completions.size(); ++i) {
    EXPECT_EQ(completions[i].ids, hf[i].get<std::vector<std::int64_t>>()) << "prompt " << i;
    EXPECT_EQ(completions[i].finish_reason, "length");
  }
}

INSTANTIATE_TEST_SUITE_P(Families, GreedyVsHf,
                         ::testing::Values("deepseek_v2", "deepseek_v3", "qwen2"));

// Raw logprobs from the engine equal the training forward's recompute, also for sequences that
// were preempted (a deliberately small cache) and recomputed.
TEST(RolloutEngine, RawLogprobsEqualTrainingRecomputeAcrossPreemption) {
  ScratchDir dir("logprobs");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 2});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(
      *lm, nullptr,
      {.block_size = 4, .num_blocks = 14, .max_batch_tokens = 16, .show_progress = false});
  std::vector<Request> requests;
  for (const auto& p : prompts())
    requests.push_back(
        {p, 2, {.temperature = 1.0, .max_tokens = 16, .ignore_eos = true, .seed = 11}});
  const auto completions = engine.generate(requests);
  EXPECT_GT(engine.last_metrics().preemptions, 0) << "the cache was meant to force preemption";
  for (const auto& c : completions) {
    const at::Tensor recompute = recompute_logprobs(*lm, requests[c.request].prompt_ids, c.ids);
    const at::Tensor engine_lp = at::tensor(c.raw_logprobs, at::kDouble).to(at::kFloat);
    EXPECT_LT((recompute - engine_lp).abs().max().item<double>(), 1e-5)
        << "request " << c.request << " sample " << c.sample;
  }
  EXPECT_EQ(engine.allocator().free_count(), engine.allocator().num_blocks());  // nothing leaked
}

// The FP8 latent cache on the CPU (reference decode over dequantised pages): a tiny MLA model
// with kv_lora_rank 128 (one scale group per token), sampled completions across pages and
// preemption; the engine's raw logprobs against the training forward's exact recompute, within
// FP8's precision (e4m3 rounds each latent value by up to 1/16 of it; measured here 0.12 nats at
// worst, 0.012 on average, against 1e-5 with the FP32 cache in the test above): |diff| < 0.3
// per token and < 0.03 on average, and not bit-equal (the cache really is FP8). The pages hold
// 128 FP8 bytes + one FP32 scale + 16 BF16 RoPE dims = 164 bytes per token and layer.
TEST(RolloutEngine, Fp8CacheLogprobsCloseToExactRecompute) {
  ScratchDir dir("fp8_cache");
  nlohmann::json config = model::preset_config("tiny-mla");
  config["kv_lora_rank"] = 128;
  model::init_model(config, dir / "m", {.seed = 4});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(*lm, nullptr,
                       {.block_size = 4,
                        .num_blocks = 20,
                        .max_batch_tokens = 16,
                        .show_progress = false,
                        .kv_cache_dtype = model::KvCacheDtype::kFp8});
  const model::ModelConfig& c = lm->config();
  EXPECT_EQ(engine.cache_bytes(), 20 * 4 * c.num_hidden_layers * (128 + 4 + 2 * 16));
  std::vector<Request> requests;
  for (const auto& p : prompts())
    requests.push_back(
        {p, 2, {.temperature = 1.0, .max_tokens = 16, .ignore_eos = true, .seed = 5}});
  const auto completions = engine.generate(requests);
  EXPECT_GT(engine.last_metrics().preemptions, 0) << "the cache was meant to force preemption";
  double worst = 0, total = 0;
  std::int64_t tokens = 0;
  for (const auto& comp : completions) {
    const at::Tensor recompute =
        recompute_logprobs(*lm, requests[comp.request].prompt_ids, comp.ids);
    const at::Tensor diff =
        (recompute.to(at::kDouble) - at::tensor(comp.raw_logprobs, at::kDouble)).abs();
    worst = std::max(worst, diff.max().item<double>());
    total += diff.sum().item<double>();
    tokens += diff.numel();
  }
  const double mean = total / static_cast<double>(tokens);
  EXPECT_LT(worst, 0.3) << "mean " << mean;
  EXPECT_LT(mean, 0.03) << "worst " << worst;
  EXPECT_GT(worst, 1e-6) << "the FP8 cache changed nothing";
}

// An FP8 cache is refused with the reason for a GQA model and for a latent of 64 (not a multiple
// of 128), and an unknown option value names the field.
TEST(RolloutEngine, Fp8CacheRefusedWhereTheModelHasNone) {
  ScratchDir dir("fp8_refused");
  const auto message = [&](const std::string& preset) {
    model::init_model(model::preset_config(preset), dir / preset, {.seed = 1});
    auto lm = model::load_causal_lm(dir / preset, at::kCPU, at::kFloat);
    try {
      RolloutEngine(
          *lm, nullptr,
          {.num_blocks = 4, .show_progress = false, .kv_cache_dtype = model::KvCacheDtype::kFp8});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("tiny-qwen2").find("GQA"), std::string::npos) << message("tiny-qwen2");
  EXPECT_NE(message("tiny-mla").find("multiple of 128 (this model: 64)"), std::string::npos)
      << message("tiny-mla");
  EXPECT_EQ(model::parse_kv_cache_dtype("fp8", "f"), model::KvCacheDtype::kFp8);
  EXPECT_EQ(model::parse_kv_cache_dtype("auto", "f"), model::KvCacheDtype::kAuto);
  try {
    model::parse_kv_cache_dtype("bf8", "--kv-cache-dtype");
    ADD_FAILURE() << "bf8 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "--kv-cache-dtype: unsupported value 'bf8' (expected one of: auto, fp8)");
  }
}

TEST(RolloutEngine, SixteenSamplesShareOnePrompt) {
  ScratchDir dir("sharing");
  model::init_model(model::preset_config("tiny-qwen2"), dir / "m", {.seed = 3});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(
      *lm, nullptr,
      {.block_size = 64, .num_blocks = 100, .max_batch_tokens = 256, .show_progress = false});
  std::vector<std::int64_t> prompt(130);
  for (std::size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = static_cast<std::int64_t>(7 * i % 6400);
  const std::vector<Request> requests = {
      {prompt, 16, {.temperature = 1.0, .max_tokens = 8, .ignore_eos = true}}};
  const auto completions = engine.generate(requests);
  ASSERT_EQ(completions.size(), 16u);
  // 2 full prompt blocks shared by all, plus one block per sample for the copied partial block
  // and its continuation: 18, versus 48 without sharing.
  EXPECT_LE(engine.last_metrics().peak_blocks_used, 2 + 16 + 1);
  EXPECT_EQ(engine.allocator().free_count(), 100);
}

TEST(RolloutEngine, SeededSamplesDoNotDependOnBatchOrder) {
  ScratchDir dir("seeds");
  model::init_model(model::preset_config("tiny-qwen2"), dir / "m", {.seed = 4});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(*lm, nullptr, {.block_size = 8, .num_blocks = 64, .show_progress = false});
  const SamplingParams params{
      .temperature = 1.0, .top_p = 0.95, .max_tokens = 10, .ignore_eos = true, .seed = 99};
  const Request a{prompts()[0], 3, params},
      b{prompts()[1], 2, {.temperature = 0.8, .max_tokens = 6, .seed = 5}};
  const std::vector<Request> ab = {a, b}, ba = {b, a};
  const auto first = engine.generate(ab), second = engine.generate(ba);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(first[k].ids, second[2 + k].ids) << "sample " << k;
  EXPECT_NE(first[0].ids, first[1].ids);  // different samples of one request differ
}

}  // namespace
}  // namespace ponder::engine

namespace ponder::engine {
namespace {

TEST(RolloutEngine, StopsOnTokenIdsAndMaxTokensWithoutLeakingBlocks) {
  ScratchDir dir("stops");
  model::init_model(model::preset_config("tiny-qwen2"), dir / "m", {.seed = 6});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(*lm, nullptr, {.block_size = 4, .num_blocks = 64, .show_progress = false});
  const auto greedy = engine.generate(std::vector<Request>{
      {prompts()[0], 1, {.temperature = 0, .max_tokens = 8, .ignore_eos = true}}});
  const std::int64_t third = greedy[0].ids[2];
  const std::vector<Request> requests = {
      {prompts()[0],
       4,
       {.temperature = 0, .max_tokens = 8, .stop_token_ids = {third}, .ignore_eos = true}},
      {prompts()[1], 3, {.temperature = 1.0, .max_tokens = 1, .ignore_eos = true}}};
  const auto out = engine.generate(requests);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(out[k].finish_reason, "stop");
    EXPECT_EQ(out[k].ids.back(), third);
    EXPECT_LE(out[k].ids.size(), 3u);
  }
  for (int k = 4; k < 7; ++k) {
    EXPECT_EQ(out[k].finish_reason, "length");
    EXPECT_EQ(out[k].ids.size(), 1u);
  }
  EXPECT_EQ(engine.allocator().free_count(), 64);
}

// on_finish reports every completion exactly once, as it finishes: one-token answers before the
// long ones are done, and with exactly what generate returns.
TEST(RolloutEngine, FinishCallbackReportsEachCompletionWhileOthersRun) {
  ScratchDir dir("on_finish");
  model::init_model(model::preset_config("tiny-qwen2"), dir / "m", {.seed = 6});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(*lm, nullptr, {.block_size = 4, .num_blocks = 64, .show_progress = false});
  const std::vector<Request> requests = {
      {prompts()[0], 2, {.temperature = 1.0, .max_tokens = 10, .ignore_eos = true, .seed = 3}},
      {prompts()[1], 3, {.temperature = 1.0, .max_tokens = 1, .ignore_eos = true, .seed = 4}}};
  std::vector<Completion> reported;
  std::vector<std::int64_t> long_tokens_when_reported;
  const auto out = engine.generate(requests, {}, [&](const Completion& c) {
    reported.push_back(c);
    long_tokens_when_reported.push_back(engine.last_metrics().generated_tokens);
  });
  ASSERT_EQ(reported.size(), out.size());
  for (const auto& c : out) {
    const auto same = std::count_if(reported.begin(), reported.end(), [&](const Completion& r) {
      return r.request == c.request && r.sample == c.sample && r.ids == c.ids &&
             r.finish_reason == c.finish_reason;
    });
    EXPECT_EQ(same, 1) << "request " << c.request << " sample " << c.sample;
  }
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(reported[i].request, 1u) << i;
  EXPECT_LT(long_tokens_when_reported[0], 2 * 10 + 3) << "reported only after everything ended";
}

// Tokens per step when the options leave it 0: a 2,500-token prompt on the CPU prefills in chunks
// of 1,024 (3 steps), then decodes 2 more tokens one step each; on a GPU the default is 16,384.
TEST(RolloutEngine, DefaultTokensPerStepByDevice) {
  EXPECT_EQ(default_batch_tokens(at::kCPU), 1024);
  EXPECT_EQ(default_batch_tokens(at::Device(at::kCUDA, 0)), 16384);
  ScratchDir dir("default_chunk");
  model::init_model(model::preset_config("tiny-qwen2"), dir / "m", {.seed = 6});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine engine(*lm, nullptr, {.block_size = 16, .num_blocks = 200, .show_progress = false});
  std::vector<std::int64_t> prompt(2500);
  for (std::size_t i = 0; i < prompt.size(); ++i)
    prompt[i] = 3 + static_cast<std::int64_t>(i * 7 % 6000);
  engine.generate(
      std::vector<Request>{{prompt, 1, {.temperature = 0, .max_tokens = 3, .ignore_eos = true}}});
  EXPECT_EQ(engine.last_metrics().steps, 3 + 2);
  EXPECT_THROW(RolloutEngine(*lm, nullptr, {.max_batch_tokens = -1, .show_progress = false}),
               Error);
}

// Resident set size of this process, from the kernel's page accounting.
std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The colocated-training hand-off: release_cache() gives the KV pages back to the system (the
// process's resident memory drops by the cache's size, computed here from the config), generate
// refuses to run while released, and reserve_cache() restores a cache that reproduces the seeded
// samples generated before the release.
TEST(RolloutEngine, ReleaseCacheFreesPagesAndReserveRestoresSeededOutput) {
  ScratchDir dir("handoff");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 8});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  const model::ModelConfig& c = lm->config();
  // Each layer's page tensor (42 MB) is above glibc's largest mmap threshold, so freeing it
  // unmaps it and the drop shows in the resident set.
  const std::int64_t blocks = 2048, block_size = 64;
  const std::int64_t cache_bytes = blocks * block_size * (c.kv_lora_rank + c.qk_rope_head_dim) *
                                   c.num_hidden_layers * static_cast<std::int64_t>(sizeof(float));
  RolloutEngine engine(*lm, nullptr,
                       {.block_size = block_size, .num_blocks = blocks, .show_progress = false});
  const std::vector<Request> requests = {
      {prompts()[0], 3, {.temperature = 1.0, .top_p = 0.9, .max_tokens = 12, .seed = 7}},
      {prompts()[2], 2, {.temperature = 0.7, .top_k = 20, .max_tokens = 9, .seed = 8}}};
  const auto before = engine.generate(requests);

  const std::int64_t held = resident_bytes();
  engine.release_cache();
  EXPECT_EQ(engine.allocator().num_blocks(), 0);
  EXPECT_GE(held - resident_bytes(), cache_bytes * 9 / 10) << "cache of " << cache_bytes << " B";
  try {
    engine.generate(requests);
    ADD_FAILURE() << "generate ran on a released cache";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reserve_cache()"), std::string::npos) << e.what();
  }

  const std::int64_t released = resident_bytes();
  engine.reserve_cache();
  EXPECT_GE(resident_bytes() - released, cache_bytes * 9 / 10);
  EXPECT_EQ(engine.allocator().num_blocks(), blocks);
  EXPECT_EQ(engine.allocator().free_count(), blocks);
  const auto after = engine.generate(requests);
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(after[i].ids, before[i].ids) << "completion " << i;
    EXPECT_EQ(after[i].raw_logprobs, before[i].raw_logprobs) << "completion " << i;
  }
  EXPECT_EQ(engine.allocator().free_count(), blocks);
}

// max_blocks caps the pages whether they are given or sized from free memory (a quarter of the
// host's available memory: far more than 40 blocks of this model); a cache released and reserved
// again keeps its first size; releasing or reserving twice is a no-op.
TEST(RolloutEngine, MaxBlocksCapsTheCacheAndReservationsKeepTheFirstSize) {
  ScratchDir dir("cap");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 8});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  RolloutEngine given(
      *lm, nullptr,
      {.block_size = 16, .num_blocks = 100, .max_blocks = 40, .show_progress = false});
  EXPECT_EQ(given.allocator().num_blocks(), 40);
  RolloutEngine under(
      *lm, nullptr, {.block_size = 16, .num_blocks = 30, .max_blocks = 40, .show_progress = false});
  EXPECT_EQ(under.allocator().num_blocks(), 30);
  RolloutEngine sized(*lm, nullptr, {.block_size = 16, .max_blocks = 40, .show_progress = false});
  EXPECT_EQ(sized.allocator().num_blocks(), 40);
  const model::ModelConfig& c = lm->config();
  EXPECT_EQ(sized.cache_bytes(), 40 * 16 * (c.kv_lora_rank + c.qk_rope_head_dim) *
                                     c.num_hidden_layers *
                                     static_cast<std::int64_t>(sizeof(float)));
  for (int round = 0; round < 2; ++round) {
    sized.release_cache();
    sized.release_cache();
    EXPECT_TRUE(sized.cache_released());
    EXPECT_EQ(sized.cache_bytes(), 0);
    sized.reserve_cache();
    sized.reserve_cache();
    EXPECT_FALSE(sized.cache_released());
    EXPECT_EQ(sized.allocator().num_blocks(), 40);
    EXPECT_EQ(sized.allocator().free_count(), 40);
  }
}

}  // namespace
}  // namespace ponder::engine
