// Memory and precision options of `ponder train` against the plain run: gradient accumulation
// over micro-batches and activation checkpointing give the same update; BF16 linears take effect
// and stay close to FP32; the MoE sequence-wise balance loss is logged and trained.
#include <gtest/gtest.h>

#include <map>

#include "model/safetensors.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder {
namespace {

// One GRPO step after a short SFT; the length penalty varies within every group, so the step
// always updates the policy. 8 sequences per step, so micro-batches of 3 split them 3 + 3 + 2.
std::filesystem::path train(const testing_util::ScratchDir& dir, const std::string& name,
                            const std::string& extra) {
  const auto run_dir = dir / name;
  std::string args = PONDER_BINARY;
  args += " train --set run_dir=";
  args += run_dir.string();
  args +=
      " --set steps=1 --set sft.steps=6 --set sft.batch_size=4 --set data.eval_size=2 --set "
      "eval.n=1 --set rollout.prompts_per_step=2 --set rollout.n=4 --set rollout.max_tokens=12 "
      "--set 'rewards=[{\"name\": \"overlong\", \"options\": {\"max_tokens\": 12, "
      "\"buffer\": 10}}]' ";
  args += extra;
  args += " 2>&1";
  const auto r = testing_util::run_command(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return run_dir;
}

std::map<std::string, at::Tensor> weights(const std::filesystem::path& run_dir, int step) {
  const model::SafetensorsFile file(run_dir / "checkpoints" / ("step-" + std::to_string(step)) /
                                    "model.safetensors");
  std::map<std::string, at::Tensor> out;
  for (const auto& name : file.names()) out[name] = file.load(name, at::kFloat);
  return out;
}

double max_difference(const std::map<std::string, at::Tensor>& a,
                      const std::map<std::string, at::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, tensor] : a)
    worst = std::max(worst, (tensor - b.at(name)).abs().max().item<double>());
  return worst;
}

std::map<std::string, double> metrics_at(const std::filesystem::path& run_dir, std::int64_t step) {
  store::RunStore store(run_dir);
  std::map<std::string, double> out;
  for (const auto& m : store.metrics())
    if (m.step == step) out[m.name] = m.value;
  return out;
}

TEST(TrainOptions, MicroBatchesAndCheckpointingGiveTheSameUpdate) {
  testing_util::ScratchDir dir("train_options");
  const auto plain = train(dir, "plain", "");
  const auto micro = train(dir, "micro", "--set train.micro_batch_size=3");
  const auto recompute = train(dir, "recompute", "--set train.activation_checkpointing=true");
  const auto before = weights(plain, 0), after = weights(plain, 1);
  ASSERT_GT(max_difference(before, after), 1e-4) << "the GRPO step did not move the weights";
  EXPECT_LE(max_difference(after, weights(micro, 1)), 2e-6);
  EXPECT_LE(max_difference(after, weights(recompute, 1)), 2e-6);
  const auto loss = metrics_at(plain, 1).at("train/loss");
  EXPECT_NEAR(metrics_at(micro, 1).at("train/loss"), loss, 1e-6);
  EXPECT_NEAR(metrics_at(recompute, 1).at("train/loss"), loss, 1e-6);
}

TEST(TrainOptions, Bf16LinearsChangeTheNumbersSlightly) {
  testing_util::ScratchDir dir("train_bf16");
  const auto fp32 = metrics_at(train(dir, "fp32", ""), -6).at("sft/loss");
  const auto bf16 = metrics_at(train(dir, "bf16", "--set train.precision=bf16"), -6).at("sft/loss");
  EXPECT_NE(fp32, bf16) << "train.precision=bf16 had no effect";
  EXPECT_NEAR(fp32, bf16, 0.02 * fp32);
}

TEST(TrainOptions, SequenceBalanceLossIsLoggedAndTrained) {
  testing_util::ScratchDir dir("train_balance");
  const auto plain = train(dir, "plain", "");
  const auto balanced = train(dir, "balanced", "--set optim.balance_loss_coef=0.5");
  const auto m = metrics_at(balanced, 1);
  ASSERT_TRUE(m.count("moe/sequence_balance_loss"));
  // summed over MoE layers: sum_i f_i P_i, 1 per layer when routing is uniform
  EXPECT_GT(m.at("moe/sequence_balance_loss"), 0.0);
  EXPECT_GT(max_difference(weights(plain, 1), weights(balanced, 1)), 1e-6);
  EXPECT_FALSE(metrics_at(plain, 1).count("moe/sequence_balance_loss"));
}

}  // namespace
}  // namespace ponder
