// The whole GPU path end to end: a random-init tiny DeepSeek (MLA + MoE) model generating on the
// GPU (kernels for norms, RoPE, SwiGLU, sampling, token logprobs) gives the CPU engine's tokens
// for the same seeds, greedy and under top-k/top-p/min-p, and the same log-probabilities; its
// decode steps replayed as CUDA graphs give the eager steps' tokens and log-probabilities. The same
// with the FP8 latent cache (quantised by ATen on either device, read by the decode kernel). A
// cache released and reserved again keeps its recorded graphs valid; graphs released give their
// memory pool back and are recorded again. Decode steps launched ahead of the host (async
// decode) give the synchronous steps' outputs under stop tokens, stop strings, max_tokens, forks
// and preemption.
#include <gtest/gtest.h>

#include <array>
#include <iostream>
#include <set>

#include "engine/rollout_engine.h"
#include "kernels/binding.h"
#include "model/init_model.h"
#include "model/tokenizer.h"
#include "tests/common/test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

std::vector<engine::Completion> generate(
    const std::filesystem::path& dir, at::Device device, const engine::SamplingParams& params,
    model::KvCacheDtype cache_dtype = model::KvCacheDtype::kAuto) {
  auto lm = model::load_causal_lm(dir, device, at::kFloat);
  engine::RolloutEngine engine(*lm, nullptr,
                               {.block_size = 4,
                                .num_blocks = 96,
                                .max_batch_tokens = 16,
                                .show_progress = false,
                                .kv_cache_dtype = cache_dtype});
  std::vector<engine::Request> requests;
  for (const auto& prompt : std::vector<std::vector<std::int64_t>>{
           {5, 17, 99, 1024, 7, 3, 250, 11, 42, 8}, {8, 9, 10}, {300, 301, 302, 303, 304}})
    requests.push_back({prompt, 3, params});
  return engine.generate(requests);
}

class EngineOnGpu : public ::testing::TestWithParam<model::KvCacheDtype> {};

// FP8: kv_lora_rank 128 (a multiple of the 128-value scale groups); both engines FP32, so both
// decode with the reference over dequantised pages.
TEST_P(EngineOnGpu, SameTokensAndLogprobsAsCpu) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_gpu");
  nlohmann::json config = model::preset_config("tiny-mla");
  if (GetParam() == model::KvCacheDtype::kFp8) config["kv_lora_rank"] = 128;
  model::init_model(config, dir / "m", {.seed = 3});
  engine::SamplingParams greedy{.temperature = 0, .max_tokens = 10, .ignore_eos = true};
  engine::SamplingParams filtered{.temperature = 0.9,
                                  .top_p = 0.9,
                                  .top_k = 40,
                                  .min_p = 0.01,
                                  .max_tokens = 10,
                                  .ignore_eos = true,
                                  .seed = 11};
  for (const auto& params : {greedy, filtered}) {
    const auto cpu = generate(dir / "m", at::kCPU, params, GetParam());
    const auto gpu = generate(dir / "m", at::kCUDA, params, GetParam());
    ASSERT_EQ(cpu.size(), gpu.size());
    for (std::size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_EQ(gpu[i].ids, cpu[i].ids) << "completion " << i << " T " << params.temperature;
      ASSERT_EQ(gpu[i].raw_logprobs.size(), cpu[i].raw_logprobs.size());
      for (std::size_t t = 0; t < cpu[i].raw_logprobs.size(); ++t) {
        EXPECT_NEAR(gpu[i].raw_logprobs[t], cpu[i].raw_logprobs[t], 1e-3) << i << ":" << t;
        EXPECT_NEAR(gpu[i].logprobs[t], cpu[i].logprobs[t], 1e-3) << i << ":" << t;
      }
    }
  }
}

// A small MLA model with the decode kernel's shapes (latent 512, RoPE 64, 16 heads, pages of 64)
// in BF16: seven sequences of four requests (forks after the prompts, contexts crossing pages,
// greedy and filtered sampling) finish at different lengths, so the decode steps run in buckets
// of 8 (padded), 4, 2 and 1 rows, each eagerly for its first steps and then replayed. The eager
// engine is the reference. With FP8 the decode kernel reads FP8 pages in both.
TEST_P(EngineOnGpu, DecodeGraphsMatchEager) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_graphs");
  nlohmann::json config = model::preset_config("tiny-mla");
  config["kv_lora_rank"] = 512;
  config["qk_rope_head_dim"] = 64;
  config["num_attention_heads"] = 16;
  model::init_model(config, dir / "m", {.seed = 5});
  auto lm = model::load_causal_lm(dir / "m", at::kCUDA, at::kBFloat16);
  ASSERT_TRUE(lm->graph_capturable());
  const engine::SamplingParams filtered{
      .temperature = 0.9, .top_p = 0.9, .top_k = 40, .min_p = 0.01, .ignore_eos = true};
  std::vector<engine::Request> requests;
  // prompt length, samples, new tokens, sampled (else greedy)
  const std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>> shapes = {
      {10, 3, 12, false}, {70, 2, 20, true}, {40, 1, 24, true}, {130, 1, 200, false}};
  for (const auto& [prompt, n, new_tokens, sampled] : shapes) {
    engine::SamplingParams p = sampled ? filtered : engine::SamplingParams{.temperature = 0};
    p.max_tokens = new_tokens;
    p.ignore_eos = true;
    p.seed = static_cast<std::uint64_t>(prompt);
    const at::Tensor ids = at::randint(3, 6400, {prompt}, at::kLong);
    requests.push_back(
        {{ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + prompt}, n, p});
  }
  std::int64_t recordings = 0, rerecorded = 0;
  std::vector<engine::Completion> after_release, after_graphs_release;
  auto run = [&](bool graphs, std::size_t* captured) {
    engine::RolloutEngine engine(*lm, nullptr,
                                 {.block_size = 64,
                                  .num_blocks = 32,
                                  .max_batch_tokens = 512,
                                  .max_running = 16,
                                  .show_progress = false,
                                  .cuda_graphs = graphs,
                                  .kv_cache_dtype = GetParam()});
    auto completions = engine.generate(requests);
    if (graphs) {  // pages given back (the driver's free memory rises) and taken again
      const std::int64_t pages = engine.cache_bytes(),
                         held = free_device_memory(at::Device(at::kCUDA, 0));
      engine.release_cache();
      EXPECT_GE(free_device_memory(at::Device(at::kCUDA, 0)) - held, pages);
      engine.reserve_cache();
      after_release = engine.generate(requests);
      *captured = engine.captured_graphs();
      recordings = engine.graph_recordings();
      // The graphs dropped: their pool goes back to the driver; the next generate records again.
      const at::Device gpu(at::kCUDA, 0);
      const std::int64_t pool = engine.graph_pool_bytes(), reserved = reserved_bytes(gpu);
      std::cout << "decode graphs' memory pool: " << pool << " bytes\n";
      EXPECT_GT(pool, 0);
      engine.release_graphs();
      EXPECT_EQ(engine.captured_graphs(), 0u);
      EXPECT_EQ(engine.graph_pool_bytes(), 0);
      EXPECT_GE(reserved - reserved_bytes(gpu), pool);
      after_graphs_release = engine.generate(requests);
      rerecorded = engine.graph_recordings() - recordings;
      return completions;
    }
    *captured = engine.captured_graphs();
    return completions;
  };
  std::size_t eager_graphs = 0, graphs = 0;
  const auto eager = run(false, &eager_graphs);
  const auto replayed = run(true, &graphs);
  EXPECT_EQ(eager_graphs, 0u);
  EXPECT_EQ(graphs, 4u) << "buckets 8, 4, 2 and 1";
  // The tables are reserved for the longest sequence (130 + 200 tokens: 6 pages) at the start, so
  // bucket 1 is not re-recorded when that sequence's tables outgrow 4 pages (at 257 tokens).
  // The second generate, after the cache was released and reserved, replays the same graphs:
  // the pages came back at their addresses.
  EXPECT_EQ(recordings, 4) << "each bucket recorded once, none after the release";
  EXPECT_EQ(rerecorded, 4) << "each bucket recorded again after release_graphs";
  for (const auto* run_ : std::array<const std::vector<engine::Completion>*, 3>{
           &replayed, &after_release, &after_graphs_release}) {
    ASSERT_EQ(eager.size(), run_->size());
    for (std::size_t i = 0; i < eager.size(); ++i) {
      const auto& r = (*run_)[i];
      EXPECT_EQ(r.ids, eager[i].ids) << "completion " << i;
      ASSERT_EQ(r.raw_logprobs.size(), eager[i].raw_logprobs.size());
      for (std::size_t t = 0; t < eager[i].raw_logprobs.size(); ++t) {
        EXPECT_NEAR(r.raw_logprobs[t], eager[i].raw_logprobs[t], 1e-3) << i << ":" << t;
        EXPECT_NEAR(r.logprobs[t], eager[i].logprobs[t], 1e-3) << i << ":" << t;
      }
    }
  }
}

// What one generate gives: the completions, the streamed pieces and the finish reports in the
// order they came, and the steps launched ahead.
struct Outputs {
  std::vector<engine::Completion> completions;
  std::vector<std::string> streamed, finished;
  std::int64_t steps_ahead = 0, steps = 0, preemptions = 0;
};

Outputs generate_all(model::CausalLM& lm, const model::Tokenizer& tokenizer,
                     const std::vector<engine::Request>& requests, std::int64_t blocks, bool graphs,
                     bool async) {
  // The graphs' scratch page aside, every engine has `blocks` - 1 pages for its sequences.
  engine::RolloutEngine engine(lm, &tokenizer,
                               {.block_size = 64,
                                .num_blocks = graphs ? blocks : blocks - 1,
                                .max_batch_tokens = 512,
                                .max_running = 16,
                                .show_progress = false,
                                .cuda_graphs = graphs,
                                .async_decode = async});
  Outputs o;
  const auto tag = [](std::size_t request, std::int64_t sample) {
    return std::to_string(request) + "/" + std::to_string(sample) + ":";
  };
  o.completions = engine.generate(
      requests,
      [&](std::size_t r, std::int64_t k, const std::string& piece) {
        o.streamed.push_back(tag(r, k) + piece);
      },
      [&](const engine::Completion& c) { o.finished.push_back(tag(c.request, c.sample)); });
  o.steps_ahead = engine.last_metrics().steps_ahead;
  o.steps = engine.last_metrics().steps;
  o.preemptions = engine.last_metrics().preemptions;
  EXPECT_EQ(engine.allocator().free_count(), blocks - 1) << "all pages free but the scratch page";
  return o;
}

// Seven sequences of five requests (forks, greedy and filtered sampling) end at different steps
// on stop tokens, a stop string, max_tokens (1 to 120) and EOS, with the cache ample and so tight
// that sequences are preempted. Async decode runs the steady-state steps ahead of the host (a
// row of a sequence that stopped is wasted); its ids, logprobs, text, finish reasons, streamed
// pieces and finish reports equal the synchronous graph steps' exactly (a token fed a step late
// or read from another row changes what follows), and with the ample cache its ids equal the
// eager engine's (under preemption the eager engine recomputes at other steps: its pages hold
// numbers of other kernels).
TEST(EngineOnGpuAsync, SameOutputsAsSynchronousSteps) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_async");
  nlohmann::json config = model::preset_config("tiny-mla");
  config["kv_lora_rank"] = 512;
  config["qk_rope_head_dim"] = 64;
  config["num_attention_heads"] = 16;
  model::init_model(config, dir / "m", {.seed = 5});
  auto lm = model::load_causal_lm(dir / "m", at::kCUDA, at::kBFloat16);
  const auto tokenizer =
      model::Tokenizer::from_directory(testing_util::data_root() / "tokenizers" / "minimind");
  const engine::SamplingParams filtered{
      .temperature = 0.9, .top_p = 0.9, .top_k = 40, .min_p = 0.01, .ignore_eos = true};
  std::vector<engine::Request> requests;
  // prompt length, samples, max tokens, sampled (else greedy)
  const std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>> shapes = {
      {10, 3, 40, true},
      {70, 2, 30, true},
      {40, 1, 24, true},
      {130, 1, 120, false},
      {20, 2, 2, true}};
  for (const auto& [prompt, n, new_tokens, sampled] : shapes) {
    engine::SamplingParams p = sampled ? filtered : engine::SamplingParams{.temperature = 0};
    p.max_tokens = new_tokens;
    p.ignore_eos = prompt != 40;  // one request stops on EOS if the model says so
    p.seed = static_cast<std::uint64_t>(prompt);
    const at::Tensor ids = at::randint(3, 6400, {prompt}, at::kLong);
    requests.push_back(
        {{ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + prompt}, n, p});
  }
  // Stops drawn from a first run: tokens of request 0's samples 0 and 2 at different steps, a
  // piece of request 1 sample 1's text a third of the way in.
  const auto first = generate_all(*lm, tokenizer, requests, 64, true, false).completions;
  requests[0].params.stop_token_ids = {first[0].ids[6], first[2].ids[17]};
  const std::string& text = first[4].text;
  ASSERT_GT(text.size(), 12u);
  requests[1].params.stop = {text.substr(text.size() / 3, 3)};
  for (const std::int64_t blocks : {64, 8}) {
    const Outputs sync = generate_all(*lm, tokenizer, requests, blocks, true, false);
    const Outputs async = generate_all(*lm, tokenizer, requests, blocks, true, true);
    const Outputs eager = generate_all(*lm, tokenizer, requests, blocks, false, false);
    std::cout << blocks << " blocks: " << async.steps << " steps, " << async.steps_ahead
              << " launched ahead, " << async.preemptions << " preemptions\n";
    EXPECT_EQ(sync.steps_ahead, 0);
    EXPECT_GT(async.steps_ahead, blocks == 64 ? async.steps / 4 : 0) << blocks << " blocks";
    EXPECT_EQ(async.steps, sync.steps);
    EXPECT_EQ(async.preemptions, sync.preemptions);
    EXPECT_GT(sync.preemptions, blocks == 8 ? 0 : -1) << "the tight cache was meant to preempt";
    EXPECT_EQ(async.streamed, sync.streamed);
    EXPECT_EQ(async.finished, sync.finished);
    std::set<std::string> reasons;
    std::set<std::size_t> lengths;
    ASSERT_EQ(async.completions.size(), sync.completions.size());
    for (std::size_t i = 0; i < sync.completions.size(); ++i) {
      const auto &a = async.completions[i], &s = sync.completions[i], &e = eager.completions[i];
      EXPECT_EQ(a.ids, s.ids) << blocks << " blocks, completion " << i;
      if (blocks == 64) {
        EXPECT_EQ(a.ids, e.ids) << "completion " << i << " (eager)";
      }
      EXPECT_EQ(a.logprobs, s.logprobs) << blocks << " blocks, completion " << i;
      EXPECT_EQ(a.raw_logprobs, s.raw_logprobs) << blocks << " blocks, completion " << i;
      EXPECT_EQ(a.text, s.text) << blocks << " blocks, completion " << i;
      EXPECT_EQ(a.finish_reason, s.finish_reason) << blocks << " blocks, completion " << i;
      reasons.insert(a.finish_reason);
      lengths.insert(a.ids.size());
    }
    EXPECT_EQ(reasons, (std::set<std::string>{"length", "stop"}));
    EXPECT_GE(lengths.size(), 5u) << "sequences end at different steps";
    for (const std::size_t i : {0, 2, 4})  // request 0 samples 0 and 2, request 1 sample 1
      EXPECT_EQ(async.completions[i].finish_reason, "stop")
          << blocks << " blocks, completion " << i;
    EXPECT_LE(async.completions[0].ids.size(), 7u);
    EXPECT_LE(async.completions[2].ids.size(), 18u);
    EXPECT_LT(async.completions[4].ids.size(), first[4].ids.size());
  }
}

INSTANTIATE_TEST_SUITE_P(CacheDtypes, EngineOnGpu,
                         ::testing::Values(model::KvCacheDtype::kAuto, model::KvCacheDtype::kFp8),
                         [](const auto& info) {
                           return info.param == model::KvCacheDtype::kFp8 ? "fp8" : "auto";
                         });

}  // namespace
}  // namespace ponder::kernels
