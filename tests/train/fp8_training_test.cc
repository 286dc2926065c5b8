// FP8 training (train.precision = fp8, the DeepSeek-V3 recipe simulated on the CPU): the tiny
// MLA/MoE model trained with FP8 linears follows the FP32 loss curve step by step.
#include <gtest/gtest.h>

#include <cstdio>

#include "model/init_model.h"
#include "model/transformer.h"
#include "tests/common/test_util.h"
#include "train/adamw.h"

namespace ponder::train {
namespace {

// Next-token loss over steps of AdamW on fixed batches of counting sequences (learnable).
std::vector<double> train_losses(const std::filesystem::path& model_dir,
                                 model::LinearPrecision precision, int steps) {
  at::manual_seed(11);
  auto lm = model::load_causal_lm(model_dir, at::kCPU, at::kFloat);
  lm->set_linear_precision(precision);
  std::vector<at::Tensor> params;
  for (auto& [name, t] : lm->named_parameters())
    if (!name.ends_with("e_score_correction_bias")) params.push_back(t.requires_grad_(true));
  AdamW optimizer(params, {.lr = 3e-3, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8});
  const std::int64_t seqs = 8, len = 32;
  const at::Tensor starts = at::randint(0, 6000, {seqs, 1}, at::kLong);
  const at::Tensor tokens = (starts + at::arange(len + 1, at::kLong) * 3).reshape({seqs, len + 1});
  const at::Tensor ids = tokens.narrow(1, 0, len).reshape(-1);
  const at::Tensor targets = tokens.narrow(1, 1, len).reshape(-1);
  const at::Tensor positions = at::arange(len, at::kLong).repeat({seqs});
  const at::Tensor cu = at::arange(0, seqs * len + 1, len, at::kLong);
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    const at::Tensor loss =
        -lm->token_logprobs(lm->forward_hidden(ids, positions, cu), targets).mean();
    loss.backward();
    optimizer.step(3e-3);
    optimizer.zero_grad();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

TEST(Fp8Training, TinyMoeLossTracksFp32) {
  testing_util::ScratchDir dir("fp8_train");
  model::init_model(model::preset_config("tiny-mla"), dir / "m", {.seed = 3});
  const int steps = 10;
  const auto fp32 = train_losses(dir / "m", model::LinearPrecision::kNative, steps);
  const auto fp8 = train_losses(dir / "m", model::LinearPrecision::kFp8, steps);
  for (int s = 0; s < steps; ++s)
    std::printf("step %2d  fp32 %.4f  fp8 %.4f\n", s, fp32[s], fp8[s]);
  EXPECT_LT(fp32.back(), fp32.front() - 5.0);  // the task is being learnt (8.87 -> 2.82 nats)
  // Measured: the FP8 loss is 0.06% to 1.7% above FP32 over these steps.
  for (int s = 0; s < steps; ++s)
    EXPECT_LT(std::abs(fp8[s] - fp32[s]) / fp32[s], 0.025) << "step " << s;
  EXPECT_NE(fp8.back(), fp32.back());  // the FP8 path really ran
}

}  // namespace
}  // namespace ponder::train
