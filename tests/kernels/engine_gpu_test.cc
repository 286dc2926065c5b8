// The whole GPU path end to end: a random-init tiny DeepSeek (MLA + MoE) model generating on the
// GPU (kernels for norms, RoPE, SwiGLU, sampling, token logprobs) gives the CPU engine's tokens
// for the same seeds, greedy and under top-k/top-p/min-p, and the same log-probabilities; its
// decode steps replayed as CUDA graphs give the eager steps' tokens and log-probabilities. The same
// with the FP8 latent cache (quantised by ATen on either device, read by the decode kernel). A
// cache released and reserved again keeps its recorded graphs valid; graphs released give their
// memory pool back and are recorded again. Decode steps launched ahead of the host (async
// decode) give the synchronous steps' outputs under stop tokens, stop strings, max_tokens, forks
// and preemption. A run's outputs are bitwise the same whatever graphs exist when it starts
// (fresh engine, graphs recorded by other runs, graphs released).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <tuple>

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

// A small MLA model with the decode kernel's shapes (latent 512, RoPE 64, 16 heads) in BF16.
std::unique_ptr<model::CausalLM> kernel_shaped_mla(const std::filesystem::path& dir) {
  nlohmann::json config = model::preset_config("tiny-mla");
  config["kv_lora_rank"] = 512;
  config["qk_rope_head_dim"] = 64;
  config["num_attention_heads"] = 16;
  model::init_model(config, dir, {.seed = 5});
  return model::load_causal_lm(dir, at::kCUDA, at::kBFloat16);
}

// prompt length, samples, max tokens, sampled (else greedy)
using RequestShape = std::tuple<std::int64_t, std::int64_t, std::int64_t, bool>;

// Random prompts (ATen's generator) of the given shapes, EOS ignored, each seeded with its prompt
// length; the sampled ones filtered by top-k, top-p and min-p.
std::vector<engine::Request> random_requests(const std::vector<RequestShape>& shapes) {
  const engine::SamplingParams filtered{
      .temperature = 0.9, .top_p = 0.9, .top_k = 40, .min_p = 0.01, .ignore_eos = true};
  std::vector<engine::Request> requests;
  for (const auto& [prompt, n, new_tokens, sampled] : shapes) {
    engine::SamplingParams p = sampled ? filtered : engine::SamplingParams{.temperature = 0};
    p.max_tokens = new_tokens;
    p.ignore_eos = true;
    p.seed = static_cast<std::uint64_t>(prompt);
    const at::Tensor ids = at::randint(3, 6400, {prompt}, at::kLong);
    requests.push_back(
        {{ids.data_ptr<std::int64_t>(), ids.data_ptr<std::int64_t>() + prompt}, n, p});
  }
  return requests;
}

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
// of 8 (padded), 4, 2 and 1 rows, each through the graph's body run eagerly for its first steps,
// then replayed. The eager engine is the reference. With FP8 the decode kernel reads FP8 pages in
// both.
TEST_P(EngineOnGpu, DecodeGraphsMatchEager) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_graphs");
  auto lm = kernel_shaped_mla(dir / "m");
  ASSERT_TRUE(lm->graph_capturable());
  const auto requests = random_requests(
      {{10, 3, 12, false}, {70, 2, 20, true}, {40, 1, 24, true}, {130, 1, 200, false}});
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
  // The tables are sized for the longest sequence (130 + 200 tokens: 6 pages, 8 wide) at the
  // start, so bucket 1 is not re-recorded when that sequence's tables outgrow 4 pages (257 tokens).
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

// Completions equal bit for bit: ids, sampling and model log-probabilities.
void expect_identical(const std::vector<engine::Completion>& got,
                      const std::vector<engine::Completion>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const auto &g = got[i], &w = want[i];
    EXPECT_EQ(g.ids, w.ids) << what << ", completion " << i;
    const auto first_diff = [](const std::vector<double>& a, const std::vector<double>& b) {
      if (a.size() != b.size()) return std::string("lengths differ");
      const auto at = std::mismatch(a.begin(), a.end(), b.begin()).first - a.begin();
      return at == static_cast<std::ptrdiff_t>(a.size())
                 ? std::string("equal")
                 : "differ from token " + std::to_string(at);
    };
    EXPECT_EQ(first_diff(g.logprobs, w.logprobs), "equal") << what << ", completion " << i;
    EXPECT_EQ(first_diff(g.raw_logprobs, w.raw_logprobs), "equal") << what << ", completion " << i;
  }
}

// DeepSeek-V2-Lite's layer widths (hidden 2,048, MLA with 16 heads of 128 + 64, latent 512, no
// query LoRA, 64 experts of 1,408, 6 per token) in BF16, cut to 2 layers (one dense, intermediate
// 1,408) and a 6,400-token vocabulary, drawn on the GPU.
std::unique_ptr<model::CausalLM> v2lite_widths(const std::filesystem::path& dir) {
  nlohmann::json config = model::preset_config("deepseek-v2-lite");
  config["num_hidden_layers"] = 2;
  config["intermediate_size"] = 1408;
  config["vocab_size"] = 6400;
  config["bos_token_id"] = 1;
  config["eos_token_id"] = 2;
  model::init_model(config, dir, {.seed = 7, .dtype = at::kBFloat16, .device = at::kCUDA});
  return model::load_causal_lm(dir, at::kCUDA, at::kBFloat16);
}

// `groups` groups of `per_group` requests of 8 samples each (every other one sampled, else
// greedy); group g's prompts are first_prompt + per_group * g + j tokens long and generate
// first_tokens + 4 g tokens, so every 4 steps 8 * per_group sequences finish.
std::vector<engine::Request> staggered_requests(std::int64_t groups, std::int64_t per_group,
                                                std::int64_t first_prompt,
                                                std::int64_t first_tokens) {
  std::vector<RequestShape> shapes;
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t j = 0; j < per_group; ++j)
      shapes.emplace_back(first_prompt + per_group * g + j, 8, first_tokens + 4 * g, j % 2 == 1);
  return random_requests(shapes);
}

// Whether a decode step replays its bucket's graph or runs before the bucket is recorded changes
// no token and no log-probability bit, so a run resumed in a fresh process (no graphs) gives the
// uninterrupted run's outputs. 168 sequences (forks of 21 prompts, greedy and seeded sampling)
// finish 24 at a time every 4 steps: buckets 192 (168 rows), 160 (144), 128 (120), 96 (96, 72),
// 48 and 24, as bench_rollout_gpu's last steps (before, a bucket's first two steps ran the exact
// batch eagerly, and its first full run differed from its later ones). On a fresh engine they
// equal, bit for bit, the same run on an engine whose graphs (buckets 192 to 32, same table width)
// were recorded by 192 other sequences, on it again with every bucket recorded, after a longer
// generate widened its tables, after release_graphs, and on a fresh engine whose steps wait for
// the host (no async decode). One page per sequence.
TEST_P(EngineOnGpu, SameOutputsWhateverGraphsExist) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_repro");
  auto lm = v2lite_widths(dir / "m");
  ASSERT_TRUE(lm->graph_capturable());
  const auto requests = staggered_requests(7, 3, 8, 6);  // up to 28 + 30 tokens
  const auto others = staggered_requests(6, 4, 12, 5);   // 192 sequences, up to 35 + 25 tokens
  const auto longer = random_requests({{300, 1, 100, false}});
  const auto engine_for = [&](bool async) {
    return std::make_unique<engine::RolloutEngine>(*lm, nullptr,
                                                   engine::EngineOptions{
                                                       .block_size = 64,
                                                       .num_blocks = 256,
                                                       .max_batch_tokens = 1024,
                                                       .max_running = 256,
                                                       .show_progress = false,
                                                       .async_decode = async,
                                                       .kv_cache_dtype = GetParam(),
                                                   });
  };
  const auto fresh = engine_for(true)->generate(requests);
  expect_identical(engine_for(false)->generate(requests), fresh, "fresh engine, no async decode");
  auto warm = engine_for(true);
  warm->generate(others);
  EXPECT_GE(warm->captured_graphs(), 4u) << "buckets 192, 160, 128 and 96 among them";
  expect_identical(warm->generate(requests), fresh, "graphs recorded by other requests");
  expect_identical(warm->generate(requests), fresh, "every bucket recorded");
  warm->generate(longer);
  expect_identical(warm->generate(requests), fresh, "after a longer generate");
  warm->release_graphs();
  expect_identical(warm->generate(requests), fresh, "after release_graphs");
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
  auto lm = kernel_shaped_mla(dir / "m");
  const auto tokenizer =
      model::Tokenizer::from_directory(testing_util::data_root() / "tokenizers" / "minimind");
  auto requests = random_requests({{10, 3, 40, true},
                                   {70, 2, 30, true},
                                   {40, 1, 24, true},
                                   {130, 1, 120, false},
                                   {20, 2, 2, true}});
  requests[2].params.ignore_eos = false;  // one request stops on EOS if the model says so
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
