// The whole GPU path end to end: a random-init tiny DeepSeek (MLA + MoE) model generating on the
// GPU (kernels for norms, RoPE, SwiGLU, sampling, token logprobs) gives the CPU engine's tokens
// for the same seeds, greedy and under top-k/top-p/min-p, and the same log-probabilities.
#include <gtest/gtest.h>

#include "engine/rollout_engine.h"
#include "model/init_model.h"
#include "tests/common/test_util.h"
#include "tests/kernels/kernel_test_util.h"

namespace ponder::kernels {
namespace {

std::vector<engine::Completion> generate(const std::filesystem::path& dir, at::Device device,
                                         const engine::SamplingParams& params) {
  auto lm = model::load_causal_lm(dir, device, at::kFloat);
  engine::RolloutEngine engine(
      *lm, nullptr,
      {.block_size = 4, .num_blocks = 96, .max_batch_tokens = 16, .show_progress = false});
  std::vector<engine::Request> requests;
  for (const auto& prompt : std::vector<std::vector<std::int64_t>>{
           {5, 17, 99, 1024, 7, 3, 250, 11, 42, 8}, {8, 9, 10}, {300, 301, 302, 303, 304}})
    requests.push_back({prompt, 3, params});
  return engine.generate(requests);
}

TEST(EngineOnGpu, SameTokensAndLogprobsAsCpu) {
  PONDER_REQUIRE_GPU();
  testing_util::ScratchDir dir("engine_gpu");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 3});
  engine::SamplingParams greedy{.temperature = 0, .max_tokens = 10, .ignore_eos = true};
  engine::SamplingParams filtered{.temperature = 0.9,
                                  .top_p = 0.9,
                                  .top_k = 40,
                                  .min_p = 0.01,
                                  .max_tokens = 10,
                                  .ignore_eos = true,
                                  .seed = 11};
  for (const auto& params : {greedy, filtered}) {
    const auto cpu = generate(dir / "m", at::kCPU, params);
    const auto gpu = generate(dir / "m", at::kCUDA, params);
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

}  // namespace
}  // namespace ponder::kernels
