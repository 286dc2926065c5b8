// `ponder rm train` end to end on CPU: a tiny reward model learns a synthetic preference rule
// (the chosen answer boxes its result, the rejected one does not) to >= 95% held-out
// pairwise accuracy, and the `model` reward built on the saved directory scores like HF.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>

#include "core/error.h"
#include "core/json_file.h"
#include "rewards/model_reward.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder {
namespace {

struct Pair {
  std::string prompt, chosen, rejected;
};

// The rule a format reward checks: of two identical worked answers, the one that puts the result
// in \boxed{} is preferred.
std::vector<Pair> boxed_pairs() {
  std::vector<Pair> pairs;
  for (int a = 0; a < 20; ++a)
    for (int b = 0; b < 20; ++b) {
      const std::string q = std::to_string(a) + " + " + std::to_string(b);
      const std::string worked = q + " = " + std::to_string(a + b) + ", so the answer is ";
      pairs.push_back({"What is " + q + "?", worked + "\\boxed{" + std::to_string(a + b) + "}.",
                       worked + std::to_string(a + b) + "."});
    }
  std::shuffle(pairs.begin(), pairs.end(), std::mt19937_64(7));
  pairs.resize(300);
  return pairs;
}

TEST(RmCli, LearnsASyntheticRuleAndTheModelRewardMatchesHf) {
  testing_util::ScratchDir dir("rm_cli");
  const auto pairs = boxed_pairs();
  {
    std::ofstream out(dir / "pairs.jsonl");
    for (const auto& p : pairs)
      out << nlohmann::json{{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}}
                 .dump()
          << "\n";
  }
  const nlohmann::json recipe = {
      {"run_dir", (dir / "run").string()},
      {"epochs", 2},
      {"pairs_per_step", 32},
      {"eval_every", 4},
      {"model",
       {{"preset", "tiny-llama"},
        {"tokenizer", (testing_util::data_root() / "tokenizers" / "minimind").string()}}},
      {"data",
       {{"train_file", (dir / "pairs.jsonl").string()},
        {"eval_fraction", 0.15},
        {"chat_format", "chatml"}}},
      {"optim", {{"lr", 2e-3}, {"warmup_steps", 4}, {"schedule", "cosine"}}}};
  std::ofstream(dir / "rm.json") << recipe.dump(2);
  const std::string out = testing_util::run_checked(std::string(PONDER_BINARY) + " rm train " +
                                                    (dir / "rm.json").string() + " 2>&1");
  std::map<std::int64_t, double> accuracy, train_accuracy;
  std::string model_dir;
  {
    store::RunStore store(dir / "run");
    for (const auto& m : store.metrics())
      if (m.name == "eval/accuracy")
        accuracy[m.step] = m.value;
      else if (m.name == "train/accuracy")
        train_accuracy[m.step] = m.value;
    ASSERT_FALSE(store.checkpoints().empty());
    model_dir = store.checkpoints().back().path;
  }
  ASSERT_FALSE(accuracy.empty()) << out;
  EXPECT_GE(accuracy.rbegin()->second, 0.95) << out;
  // Step 1's batch is scored by the initial model: the rule is learned, not given.
  EXPECT_LT(train_accuracy[1], 0.9);

  rewards::RewardRegistry registry;
  rewards::register_model_rewards(registry);
  EXPECT_THROW(registry.create("model", {{"path", model_dir}, {"devise", "cpu"}}), Error);
  const auto reward = registry.create("model", {{"path", model_dir}});
  const auto* model_reward = dynamic_cast<const rewards::ModelReward*>(reward.get());
  ASSERT_NE(model_reward, nullptr);
  std::vector<rewards::Sample> samples;
  nlohmann::json oracle_input = nlohmann::json::array();
  for (std::size_t i = pairs.size() - 12; i < pairs.size(); ++i)
    for (const auto* response : {&pairs[i].chosen, &pairs[i].rejected}) {
      samples.push_back({pairs[i].prompt, *response, nullptr});
      oracle_input.push_back({{"prompt", pairs[i].prompt}, {"response", *response}});
    }
  const auto batch = model_reward->score_batch(samples);
  std::ofstream(dir / "pairs.json") << oracle_input.dump();
  testing_util::run_checked(testing_util::python() + " " + HF_RM_ORACLE + " pairs " + model_dir +
                            " " + (dir / "pairs.json").string() + " " + (dir / "hf.json").string());
  const auto hf = read_json_file(dir / "hf.json").get<std::vector<double>>();
  ASSERT_EQ(hf.size(), samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_NEAR(batch[i].value, hf[i], 1e-4) << samples[i].completion;
    EXPECT_NEAR(reward->score(samples[i]).value, batch[i].value, 1e-5);
  }
}

// A GRPO smoke run whose recipe sums the math rule reward and the `model` reward (a reward model
// from `ponder rm train`): every rollout in the run store carries both components, the total is
// their weighted sum, and the batched model scores equal the reward model's own per-sample score.
TEST(RmCli, GrpoRunLogsRuleAndModelRewardPerRollout) {
  testing_util::ScratchDir dir("rm_grpo");
  {
    std::ofstream out(dir / "pairs.jsonl");
    for (const auto& p : boxed_pairs())
      out << nlohmann::json{{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}}
                 .dump()
          << "\n";
  }
  const std::string tokenizer = (testing_util::data_root() / "tokenizers" / "minimind").string();
  const nlohmann::json rm = {{"run_dir", (dir / "rm").string()},
                             {"pairs_per_step", 32},
                             {"model", {{"preset", "tiny-llama"}, {"tokenizer", tokenizer}}},
                             {"data",
                              {{"train_file", (dir / "pairs.jsonl").string()},
                               {"eval_fraction", 0.1},
                               {"chat_format", "chatml"}}}};
  std::ofstream(dir / "rm.json") << rm.dump();
  testing_util::run_checked(std::string(PONDER_BINARY) + " rm train " + (dir / "rm.json").string() +
                            " 2>&1");
  const std::string model_dir = store::RunStore(dir / "rm").checkpoints().back().path;
  const nlohmann::json rewards = {
      {{"name", "math"}, {"weight", 1.0}},
      {{"name", "model"}, {"weight", 0.5}, {"options", {{"path", model_dir}}}}};
  const auto out = testing_util::run_checked(
      std::string(PONDER_BINARY) + " train --set run_dir=" + (dir / "grpo").string() +
      " --set steps=2 --set sft.steps=3 --set sft.batch_size=4 --set data.eval_size=2"
      " --set rollout.prompts_per_step=2 --set rollout.n=3 --set rollout.max_tokens=12"
      " --set eval.n=1 --set 'rewards=" +
      rewards.dump() + "' 2>&1");
  rewards::RewardRegistry registry;
  rewards::register_model_rewards(registry);
  const auto model_reward = registry.create("model", {{"path", model_dir}});
  std::int64_t checked = 0;
  for (const auto& r : store::RunStore(dir / "grpo").rollouts()) {
    if (r.split != "train") continue;
    ASSERT_TRUE(r.reward_details.contains("math") && r.reward_details.contains("model"))
        << r.reward_details.dump();
    const double math = r.reward_details["math"]["value"];
    const double model = r.reward_details["model"]["value"];
    EXPECT_TRUE(math == 0.0 || math == 1.0);
    EXPECT_NEAR(r.reward, math + 0.5 * model, 1e-12);
    EXPECT_EQ(r.reward_details["model"]["details"]["score"].get<double>(), model);
    EXPECT_NEAR(model, model_reward->score({r.prompt, r.completion, nullptr}).value, 1e-5)
        << r.completion;
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 2 * 3) << out;
}

}  // namespace
}  // namespace ponder
