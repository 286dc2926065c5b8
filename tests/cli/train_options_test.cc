// Memory and precision options of `ponder train` against the plain run: gradient accumulation
// over micro-batches and activation checkpointing give the same update; BF16 linears take effect
// and stay close to FP32; the MoE sequence-wise balance loss is logged and trained; one-step
// off-policy generation trains on batches from the weights one update behind; BF16 rollouts
// generate with a copy of the policy that follows its updates; releasing the KV cache between
// phases changes nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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

std::vector<std::string> rollouts_at(const std::filesystem::path& run_dir, std::int64_t step) {
  store::RunStore store(run_dir);
  std::vector<std::string> out;
  for (const auto& r : store.rollouts())
    if (r.step == step && r.split == "train") out.push_back(r.completion);
  std::sort(out.begin(), out.end());
  return out;
}

// Step 1's batch comes from the starting weights either way, so its update is the same; step 2's
// comes from those weights again (not from step 1's), so the trainer's recomputed log-probs, and
// the importance ratios of the loss, differ from the generator's by far more than the numerical
// mismatch of the on-policy run.
TEST(TrainOptions, OffPolicyGenerationTrainsOnTheBatchOfTheWeightsOneUpdateBehind) {
  testing_util::ScratchDir dir("train_off_policy");
  const std::string two_steps = "--set steps=2 --set checkpoint_every=1 ";
  const auto on = train(dir, "on", two_steps);
  const auto off = train(dir, "off", two_steps + "--set rollout.off_policy_steps=1");
  EXPECT_EQ(max_difference(weights(on, 1), weights(off, 1)), 0.0);
  EXPECT_EQ(rollouts_at(on, 1), rollouts_at(off, 1));
  EXPECT_EQ(metrics_at(off, 1).at("rollout/policy_lag_steps"), 0.0);
  EXPECT_EQ(metrics_at(off, 2).at("rollout/policy_lag_steps"), 1.0);
  const double on_policy_gap = metrics_at(on, 2).at("rollout/logprob_mismatch_mean");
  const double off_policy_gap = metrics_at(off, 2).at("rollout/logprob_mismatch_mean");
  EXPECT_LT(on_policy_gap, 1e-4);
  EXPECT_GT(off_policy_gap, 10 * on_policy_gap);
  // the clipped objective's ratio is taken against the generator's log-probs
  const auto ratio_offset = [](const std::filesystem::path& run) {
    return std::abs(metrics_at(run, 2).at("train/ratio_mean") - 1.0);
  };
  EXPECT_GT(ratio_offset(off), 10 * ratio_offset(on));
  EXPECT_FALSE(std::filesystem::exists(off / "checkpoints" / "step-2" / "generator.safetensors"))
      << "nothing is pending after the last step";
  EXPECT_TRUE(std::filesystem::exists(off / "checkpoints" / "step-1" / "generator.safetensors"));
}

// Without updates the generator never falls behind: the batches are the same as on-policy.
TEST(TrainOptions, OffPolicyGenerationWithoutUpdatesSamplesTheOnPolicyBatches) {
  testing_util::ScratchDir dir("train_off_policy_frozen");
  const std::string frozen = "--set steps=3 --set optim.lr=0 --set optim.routing_bias_rate=0 ";
  const auto on = train(dir, "on", frozen);
  const auto off = train(dir, "off", frozen + "--set rollout.off_policy_steps=1");
  for (std::int64_t step = 1; step <= 3; ++step)
    EXPECT_EQ(rollouts_at(on, step), rollouts_at(off, step)) << "step " << step;
  EXPECT_EQ(max_difference(weights(on, 3), weights(off, 3)), 0.0);
}

// rollout.dtype=bf16 on the CPU: the engine generates with a BF16 copy of the policy, so the
// batches differ from FP32 generation and the trainer's FP32 log-probs drift from the generator's
// by BF16 rounding (logged: ~0.003 nats/token), yet stay close, since the copy follows every
// update (SFT included; a copy left at the initial weights gives ~0.5).
TEST(TrainOptions, Bf16RolloutsGenerateWithTheRefreshedCopy) {
  testing_util::ScratchDir dir("train_bf16_rollout");
  const std::string two_steps = "--set steps=2 --set checkpoint_every=1 ";
  const auto fp32 = train(dir, "fp32", two_steps);
  const auto bf16 = train(dir, "bf16", two_steps + "--set rollout.dtype=bf16");
  EXPECT_NE(rollouts_at(fp32, 1), rollouts_at(bf16, 1)) << "rollout.dtype=bf16 had no effect";
  for (std::int64_t step = 1; step <= 2; ++step) {
    const double fp32_gap = metrics_at(fp32, step).at("rollout/logprob_mismatch_mean");
    const double bf16_gap = metrics_at(bf16, step).at("rollout/logprob_mismatch_mean");
    EXPECT_GT(bf16_gap, 10 * fp32_gap) << "step " << step;
    EXPECT_LT(bf16_gap, 0.03) << "step " << step;
    EXPECT_TRUE(metrics_at(bf16, step).count("rollout/logprob_mismatch_max"));
  }
}

// One step off-policy in BF16: the pending batch's generator, checkpointed after step 1, holds
// the step-0 policy rounded to BF16 (cast here from the FP32 checkpoint).
TEST(TrainOptions, OffPolicyBf16GeneratorHoldsThePolicyRoundedToBf16) {
  testing_util::ScratchDir dir("train_bf16_off_policy");
  const auto run = train(dir, "off",
                         "--set steps=2 --set checkpoint_every=1 "
                         "--set rollout.dtype=bf16 --set rollout.off_policy_steps=1");
  const model::SafetensorsFile generator(run / "checkpoints" / "step-1" / "generator.safetensors");
  const auto policy = weights(run, 0);
  ASSERT_EQ(generator.names().size(), policy.size());
  for (const auto& [name, tensor] : policy) {
    const at::Tensor stored = generator.load(name, at::kBFloat16);
    EXPECT_TRUE(at::equal(stored, tensor.to(at::kBFloat16))) << name;
  }
  EXPECT_GT(max_difference(policy, weights(run, 1)), 1e-4) << "step 1 did not move the policy";
}

// rollout.release_kv_cache (the default) frees the engine's KV pages during SFT and every update
// and takes them back, zeroed, for the next rollouts and held-out evaluation: with the same seed
// the batches, updates and evaluations are exactly those of a run that holds them throughout.
TEST(TrainOptions, ReleasingTheKvCacheBetweenPhasesChangesNoRolloutOrUpdate) {
  testing_util::ScratchDir dir("train_release_cache");
  const std::string two_steps = "--set steps=2 --set checkpoint_every=1 --set eval_every=1 ";
  const auto released = train(dir, "released", two_steps);
  const auto held = train(dir, "held", two_steps + "--set rollout.release_kv_cache=false");
  for (std::int64_t step = 1; step <= 2; ++step) {
    EXPECT_FALSE(rollouts_at(released, step).empty());
    EXPECT_EQ(rollouts_at(released, step), rollouts_at(held, step)) << "step " << step;
    for (const char* name : {"train/loss", "reward/mean", "eval/accuracy"})
      EXPECT_EQ(metrics_at(released, step).at(name), metrics_at(held, step).at(name))
          << name << " at step " << step;
  }
  EXPECT_GT(max_difference(weights(released, 0), weights(released, 2)), 1e-4);
  EXPECT_EQ(max_difference(weights(released, 2), weights(held, 2)), 0.0);
}

}  // namespace
}  // namespace ponder
