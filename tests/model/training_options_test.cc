// Training-time model behaviour: activation checkpointing changes memory, not gradients; the MoE
// sequence-wise balance loss follows DeepSeek-V3's formula (checked against explicit loops).
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include "model/init_model.h"
#include "model/layers.h"
#include "model/transformer.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

struct Gradients {
  double loss = 0;
  std::vector<at::Tensor> grads;
  at::Tensor routing_load;
  std::string output_node;  // the autograd node that produced the final hidden states
};

// Loss = mean log-prob of the next token over two packed sequences, plus the balance loss.
Gradients gradients(CausalLM& lm, const TrainingOptions& options) {
  lm.set_training_options(options);
  for (auto& [name, p] : lm.named_parameters()) {
    if (!name.ends_with("e_score_correction_bias")) p.requires_grad_(true);
    p.mutable_grad() = at::Tensor();
  }
  const at::Tensor ids =
      at::tensor(std::vector<std::int64_t>{5, 9, 3, 7, 2, 11, 4, 8, 6}, at::kLong);
  const at::Tensor positions = at::tensor(std::vector<std::int64_t>{0, 1, 2, 3, 4, 0, 1, 2, 3});
  const at::Tensor cu = at::tensor(std::vector<std::int64_t>{0, 5, 9});
  const at::Tensor hidden = lm.forward_hidden(ids, positions, cu);
  const at::Tensor rows = at::tensor(std::vector<std::int64_t>{0, 1, 2, 3, 5, 6, 7});
  const at::Tensor targets = at::tensor(std::vector<std::int64_t>{9, 3, 7, 2, 4, 8, 6});
  at::Tensor loss = -lm.token_logprobs(hidden.index_select(0, rows), targets).mean();
  if (const at::Tensor balance = lm.last_balance_loss(); balance.defined()) loss = loss + balance;
  loss.backward();
  Gradients out{loss.item<double>(), {}, lm.update_routing_bias(0.0), hidden.grad_fn()->name()};
  for (auto& [name, p] : lm.named_parameters())  // experts no token reached have no gradient
    if (p.requires_grad())
      out.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  return out;
}

class ActivationCheckpointing : public ::testing::TestWithParam<std::string> {};

TEST_P(ActivationCheckpointing, GivesTheSameGradientsAndRoutingLoad) {
  testing_util::ScratchDir dir("activation_checkpointing");
  init_model(preset_config(GetParam()), dir.path(), {.seed = 3});
  auto lm = load_causal_lm(dir.path(), at::kCPU, at::kFloat);
  for (bool balance : {false, true}) {
    const Gradients plain = gradients(*lm, {.sequence_balance_loss = balance});
    const Gradients recomputed =
        gradients(*lm, {.activation_checkpointing = true, .sequence_balance_loss = balance});
    EXPECT_EQ(plain.output_node.find("Recompute"), std::string::npos) << plain.output_node;
    EXPECT_NE(recomputed.output_node.find("Recompute"), std::string::npos)
        << "not checkpointed: " << recomputed.output_node;
    EXPECT_DOUBLE_EQ(plain.loss, recomputed.loss);
    ASSERT_EQ(plain.grads.size(), recomputed.grads.size());
    for (std::size_t i = 0; i < plain.grads.size(); ++i) {
      ASSERT_EQ(plain.grads[i].defined(), recomputed.grads[i].defined()) << "parameter " << i;
      if (!plain.grads[i].defined()) continue;
      EXPECT_LE((plain.grads[i] - recomputed.grads[i]).abs().max().item<double>(), 1e-6) << i;
    }
    ASSERT_EQ(plain.routing_load.defined(), recomputed.routing_load.defined());
    if (plain.routing_load.defined()) {  // the no-grad forward is not counted, the recompute is
      EXPECT_TRUE(plain.routing_load.equal(recomputed.routing_load));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Presets, ActivationCheckpointing,
                         ::testing::Values("tiny-mla", "tiny-llama"));

// L = mean over sequences of sum_i f_i P_i, f_i = E/(k T) * count_i, P_i = mean_t s_it / sum_j
// s_jt.
double balance_by_loops(const std::vector<std::vector<double>>& scores,
                        const std::vector<std::vector<std::int64_t>>& chosen,
                        const std::vector<std::int64_t>& cu, std::int64_t k) {
  const std::size_t experts = scores[0].size();
  double total = 0;
  for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
    const double t = static_cast<double>(cu[b + 1] - cu[b]);
    double sum = 0;
    for (std::size_t i = 0; i < experts; ++i) {
      double count = 0, p = 0;
      for (std::int64_t tok = cu[b]; tok < cu[b + 1]; ++tok) {
        for (auto e : chosen[tok]) count += e == static_cast<std::int64_t>(i);
        double norm = 0;
        for (double s : scores[tok]) norm += s;
        p += scores[tok][i] / norm;
      }
      sum += static_cast<double>(experts) / (static_cast<double>(k) * t) * count * (p / t);
    }
    total += sum;
  }
  return total / static_cast<double>(cu.size() - 1);
}

TEST(SequenceBalanceLoss, MatchesTheFormulaAndOnlyTheAffinitiesCarryGradient) {
  const std::vector<std::vector<double>> scores = {{0.1, 0.5, 0.3, 0.1},
                                                   {0.7, 0.1, 0.1, 0.1},
                                                   {0.2, 0.2, 0.5, 0.1},
                                                   {0.4, 0.3, 0.2, 0.1},
                                                   {0.05, 0.05, 0.1, 0.8}};
  const std::vector<std::vector<std::int64_t>> chosen = {{1, 2}, {0, 3}, {2, 0}, {0, 1}, {3, 2}};
  const std::vector<std::int64_t> cu = {0, 2, 5};
  at::Tensor s = at::zeros({5, 4});
  at::Tensor e = at::zeros({5, 2}, at::kLong);
  for (int t = 0; t < 5; ++t) {
    for (int i = 0; i < 4; ++i) s[t][i] = scores[t][i] * 3.0;  // unnormalised (sigmoid-like)
    for (int j = 0; j < 2; ++j) e[t][j] = chosen[t][j];
  }
  s.requires_grad_(true);
  const at::Tensor loss =
      sequence_balance_loss({at::ones({5, 2}), e, s}, at::tensor(cu, at::kLong));
  EXPECT_NEAR(loss.item<double>(), balance_by_loops(scores, chosen, cu, 2), 1e-6);
  loss.backward();
  EXPECT_GT(s.grad().abs().sum().item<double>(), 0.0);
}

}  // namespace
}  // namespace ponder::model
