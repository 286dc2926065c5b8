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

}  // namespace
}  // namespace ponder
