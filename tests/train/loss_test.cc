#include <gtest/gtest.h>

#include <fstream>

#include "core/json_file.h"
#include "tests/common/test_util.h"
#include "train/adamw.h"
#include "train/grpo_loss.h"

namespace ponder::train {
namespace {

using testing_util::ScratchDir;

at::Tensor from(const nlohmann::json& j) {
  return at::tensor(j.get<std::vector<double>>(), at::kDouble);
}
at::Tensor from2d(const nlohmann::json& j) {
  std::vector<at::Tensor> rows;
  for (const auto& r : j) rows.push_back(from(r));
  return at::stack(rows);
}

TEST(GrpoLoss, HandComputedAdvantagesAndClipping) {
  const at::Tensor rewards = at::tensor(std::vector<double>{1, 0, 0, 1}, at::kDouble).view({1, 4});
  // mean 0.5, unbiased std sqrt(1/3)
  const at::Tensor a = group_advantages(rewards, true, 0);
  EXPECT_NEAR(a[0][0].item<double>(), 0.5 / std::sqrt(1.0 / 3), 1e-12);
  EXPECT_NEAR(group_advantages(rewards, false)[0][1].item<double>(), -0.5, 1e-12);
  // ratio e^{0.5} = 1.6487 > 1.28 with A = +1: clipped to 1.28, loss -1.28
  const at::Tensor lp = at::full({1, 1}, 0.5, at::kDouble), old = at::zeros({1, 1}, at::kDouble);
  const auto loss = clipped_policy_loss(lp, old, at::ones({1}, at::kDouble),
                                        at::ones({1, 1}, at::kDouble), 0.2, 0.28, "token_mean", 1);
  EXPECT_NEAR(loss.loss.item<double>(), -1.28, 1e-12);
  EXPECT_EQ(loss.clip_fraction.item<double>(), 1.0);
  // A = -1 with the same ratio: min(-1.6487, -1.28) = -1.6487, loss +1.6487 (not clipped)
  const auto negative =
      clipped_policy_loss(lp, old, -at::ones({1}, at::kDouble), at::ones({1, 1}, at::kDouble), 0.2,
                          0.28, "token_mean", 1);
  EXPECT_NEAR(negative.loss.item<double>(), std::exp(0.5), 1e-12);
}

TEST(GrpoLoss, TruncatedImportanceWeightsScaleTheTokenLoss) {
  // trainer/rollout ratios e^{0.1}, e^{-0.2}, e^{1} -> weights 1.1052, 0.8187, capped at 2
  const at::Tensor trainer =
      at::tensor(std::vector<double>{0.1, -0.2, 1.0}, at::kDouble).view({1, 3});
  const at::Tensor rollout = at::zeros({1, 3}, at::kDouble);
  const at::Tensor w = truncated_importance_weights(trainer, rollout, 2.0);
  EXPECT_NEAR(w[0][0].item<double>(), std::exp(0.1), 1e-12);
  EXPECT_NEAR(w[0][1].item<double>(), std::exp(-0.2), 1e-12);
  EXPECT_EQ(w[0][2].item<double>(), 2.0);
  // ratio 1 everywhere, A = 1: per-token loss -1, weighted token mean -(1.1052 + 0.8187 + 2) / 3
  const auto loss =
      clipped_policy_loss(rollout, rollout, at::ones({1}, at::kDouble),
                          at::ones({1, 3}, at::kDouble), 0.2, 0.28, "token_mean", 3, w);
  EXPECT_NEAR(loss.loss.item<double>(), -(std::exp(0.1) + std::exp(-0.2) + 2.0) / 3, 1e-12);
}

TEST(GrpoLoss, OverlongFilterMasksTruncatedResponses) {
  const at::Tensor kept = response_mask({2, 3}, {false, true}, 4, false);
  EXPECT_TRUE(at::equal(kept, at::tensor(std::vector<float>{1, 1, 0, 0, 1, 1, 1, 0}).view({2, 4})));
  const at::Tensor filtered = response_mask({2, 3}, {false, true}, 4, true);
  EXPECT_TRUE(
      at::equal(filtered, at::tensor(std::vector<float>{1, 1, 0, 0, 0, 0, 0, 0}).view({2, 4})));
}

TEST(GrpoLoss, MatchesPyTorchReference) {
  ScratchDir dir("loss");
  at::manual_seed(3);
  const at::Tensor rewards = at::randint(0, 2, {3, 4}, at::kDouble);
  const at::Tensor logp = at::randn({4, 6}, at::kDouble) * 0.3 - 1,
                   old = logp + at::randn({4, 6}, at::kDouble) * 0.2;
  const at::Tensor ref = logp + at::randn({4, 6}, at::kDouble) * 0.1;
  at::Tensor mask = at::ones({4, 6}, at::kDouble);
  mask[0].narrow(0, 4, 2).zero_();
  mask[2].narrow(0, 1, 5).zero_();
  const at::Tensor adv = at::randn({4}, at::kDouble);
  auto list2d = [](const at::Tensor& t) {
    std::vector<std::vector<double>> rows;
    for (std::int64_t i = 0; i < t.size(0); ++i) {
      const at::Tensor r = t[i].contiguous();
      rows.emplace_back(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
    }
    return rows;
  };
  const std::vector<float> init = {0.5f, -1.0f, 2.0f, 0.0f}, target = {1.0f, 1.0f, -1.0f, 3.0f};
  const at::Tensor a = adv.contiguous();
  std::ofstream(dir / "in.json") << nlohmann::json{
      {"rewards", list2d(rewards)},
      {"logprobs", list2d(logp)},
      {"old_logprobs", list2d(old)},
      {"ref_logprobs", list2d(ref)},
      {"mask", list2d(mask)},
      {"advantages", std::vector<double>(a.data_ptr<double>(), a.data_ptr<double>() + 4)},
      {"clip_low", 0.2},
      {"clip_high", 0.28},
      {"max_tokens", 6},
      {"adam_init", init},
      {"adam_target", target}}.dump();
  const auto expected = nlohmann::json::parse(testing_util::run_checked(
      testing_util::python() + " " + TORCH_REFERENCE + " " + (dir / "in.json").string()));
  EXPECT_LT(
      (group_advantages(rewards, true) - from2d(expected["adv_std"])).abs().max().item<double>(),
      1e-9);
  EXPECT_LT(
      (group_advantages(rewards, false) - from2d(expected["adv_dr"])).abs().max().item<double>(),
      1e-12);
  for (const auto& mode : {"token_mean", "sequence_mean", "constant"})
    EXPECT_NEAR(clipped_policy_loss(logp, old, adv, mask, 0.2, 0.28, mode, 6).loss.item<double>(),
                expected["losses"][mode].get<double>(), 1e-12)
        << mode;
  for (const auto& k : {"k1", "k2", "k3"})
    EXPECT_LT((kl_estimate(logp, ref, k) - from2d(expected["kl"][k])).abs().max().item<double>(),
              1e-12)
        << k;

  at::Tensor w = at::tensor(init).requires_grad_(true);
  AdamW optimizer({w}, {.lr = 0.05, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.1});
  for (int step = 0; step < 5; ++step) {
    ((w - at::tensor(target)).pow(2) * at::arange(1, 5, at::kFloat)).sum().backward();
    optimizer.step(0.05);
    optimizer.zero_grad();
  }
  EXPECT_LT((w.detach().to(at::kDouble) - from(expected["adam"])).abs().max().item<double>(), 1e-6);
}

TEST(Schedule, WarmupThenCosine) {
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 0, 4, 10, "cosine"), 0.25);
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 4, 4, 10, "cosine"), 1.0);
  EXPECT_NEAR(scheduled_lr(1.0, 7, 4, 10, "cosine"), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(scheduled_lr(1.0, 9, 0, 10, "constant"), 1.0);
}

}  // namespace
}  // namespace ponder::train
