// The rollout copy of the policy: after an AdamW update of the FP32 policy, copy_weights leaves
// every BF16 tensor equal to the policy's value rounded to BF16 (checked against a cast done
// here), in the same storage; rollout.dtype and the engine options per device.
#include "train/rollout_model.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "model/init_model.h"
#include "tests/common/test_util.h"
#include "train/adamw.h"

namespace ponder::train {
namespace {

TEST(RolloutModel, CopyAfterAnUpdateEqualsThePolicyRoundedToBf16InPlace) {
  testing_util::ScratchDir dir("rollout_model");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 3});
  auto policy = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  auto rollout = model::load_causal_lm(dir / "m", at::kCPU, at::kBFloat16);
  std::vector<at::Tensor> params;
  for (auto& [name, tensor] : policy->named_parameters())
    params.push_back(tensor.requires_grad_(!name.ends_with("e_score_correction_bias")));
  std::vector<const void*> storage;
  for (auto& [name, tensor] : rollout->named_parameters()) storage.push_back(tensor.data_ptr());

  AdamW optimizer(params, {.lr = 1e-2});
  const at::Tensor ids = at::randint(0, policy->config().vocab_size, {12}, at::kLong);
  const at::Tensor hidden =
      policy->forward_hidden(ids, at::arange(12, at::kLong), at::tensor({0, 12}, at::kLong));
  (-policy->token_logprobs(hidden.narrow(0, 0, 11), ids.narrow(0, 1, 11)).sum()).backward();
  optimizer.step(1e-2);

  std::size_t moved = 0;
  const auto& after = policy->named_parameters();
  for (std::size_t i = 0; i < after.size(); ++i) {
    const at::Tensor copy = rollout->named_parameters()[i].second;
    moved += !at::equal(copy, after[i].second.detach().to(at::kBFloat16));
  }
  ASSERT_GT(moved, after.size() / 2) << "the update left the BF16 copy's values";

  copy_weights(*policy, *rollout);
  std::size_t bf16 = 0;
  for (std::size_t i = 0; i < after.size(); ++i) {
    const auto& [name, copy] = rollout->named_parameters()[i];
    const at::Tensor trained = after[i].second.detach();
    EXPECT_EQ(copy.data_ptr(), storage[i]) << name << " moved to new storage";
    if (copy.scalar_type() == at::kFloat) {  // what the BF16 model keeps in FP32 (routing bias)
      EXPECT_TRUE(at::equal(copy, trained)) << name;
      continue;
    }
    ASSERT_EQ(copy.scalar_type(), at::kBFloat16) << name;
    ++bf16;
    // round to nearest even in BF16 by hand: the FP32 bit pattern's top 16 bits, rounded
    const at::Tensor bits =
        trained.contiguous().view(at::kInt).to(at::kLong).bitwise_and(0xFFFFFFFF);
    const at::Tensor lsb = bits.bitwise_right_shift(16).bitwise_and(1);
    const at::Tensor rounded = (bits + 0x7FFF + lsb).bitwise_right_shift(16).bitwise_and(0xFFFF);
    const at::Tensor copied = copy.contiguous().view(at::kShort).to(at::kLong).bitwise_and(0xFFFF);
    EXPECT_TRUE(at::equal(copied, rounded)) << name;
  }
  EXPECT_GT(bf16, after.size() / 2);
}

TEST(RolloutModel, DtypeAndEngineOptionsFollowTheDevice) {
  EXPECT_EQ(rollout_dtype("auto", at::kCPU), at::kFloat);
  EXPECT_EQ(rollout_dtype("auto", at::Device(at::kCUDA, 0)), at::kBFloat16);
  EXPECT_EQ(rollout_dtype("bf16", at::kCPU), at::kBFloat16);
  EXPECT_EQ(rollout_dtype("fp32", at::Device(at::kCUDA, 0)), at::kFloat);
  EXPECT_THROW(rollout_dtype("fp16", at::kCPU), Error);
  RolloutSection section;
  section.gpu_memory_utilization = 0.4;
  // 64 sequences of up to 300 tokens: 5 pages of 64 each (4 hold 256), 1 + 64 x 5 = 321.
  const auto gpu =
      rollout_engine_options(section, at::kBFloat16, at::Device(at::kCUDA, 0), 64, 300);
  EXPECT_EQ(gpu.block_size, 64);
  EXPECT_EQ(gpu.num_blocks, 0);
  EXPECT_DOUBLE_EQ(gpu.memory_fraction, 0.4);
  EXPECT_EQ(gpu.max_blocks, 321);
  for (const auto& [dtype, device] :
       {std::pair{at::kBFloat16, at::Device(at::kCPU)}, {at::kFloat, at::Device(at::kCUDA, 0)}}) {
    // Pages of 16: 300 tokens take 19 (18 hold 288), 1 + 64 x 19 = 1,217.
    const auto options = rollout_engine_options(section, dtype, device, 64, 300);
    EXPECT_EQ(options.block_size, 16);
    EXPECT_EQ(options.num_blocks, 4096);
    EXPECT_EQ(options.max_blocks, 1217);
  }
}

// The cap: one scratch page plus whole pages of the longest sequence per sequence (a sequence of
// exactly k pages takes k, one token more takes k + 1); bad counts throw a one-line error.
TEST(RolloutModel, CacheBlocksNeededCountsWholePagesPerSequencePlusScratch) {
  EXPECT_EQ(cache_blocks_needed(1, 1, 64), 2);
  EXPECT_EQ(cache_blocks_needed(1, 64, 64), 2);
  EXPECT_EQ(cache_blocks_needed(1, 65, 64), 3);
  EXPECT_EQ(cache_blocks_needed(128, 176, 64), 1 + 128 * 3);
  EXPECT_EQ(cache_blocks_needed(3, 48, 16), 1 + 3 * 3);
  for (const auto& [sequences, tokens, block] :
       {std::tuple{0L, 10L, 16L}, {4L, 0L, 16L}, {4L, 10L, 0L}, {-1L, 10L, 16L}}) {
    try {
      cache_blocks_needed(sequences, tokens, block);
      ADD_FAILURE() << sequences << " " << tokens << " " << block << " did not throw";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("expected each >= 1"), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace ponder::train
