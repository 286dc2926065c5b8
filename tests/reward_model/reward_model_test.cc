// RewardModel: scores of ponder's saved ...ForSequenceClassification directories against HF
// AutoModelForSequenceClassification (dense and MLA/MoE backbones, pad handling), and the
// scored-pair encoding.
#include "model/reward_model.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/json_file.h"
#include "model/init_model.h"
#include "model/tokenizer.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

std::vector<double> hf_scores(const std::string& mode, const std::filesystem::path& model_dir,
                              const nlohmann::json& input, const testing_util::ScratchDir& dir) {
  std::ofstream(dir / "in.json") << input.dump();
  testing_util::run_checked(testing_util::python() + " " + HF_RM_ORACLE + " " + mode + " " +
                            model_dir.string() + " " + (dir / "in.json").string() + " " +
                            (dir / "out.json").string());
  return read_json_file(dir / "out.json").get<std::vector<double>>();
}

void check_against_hf(const std::string& preset, const std::string& architecture) {
  testing_util::ScratchDir dir("rm_" + preset);
  init_model(preset_config(preset), dir / "lm", {.seed = 5});
  at::manual_seed(11);
  auto fresh = load_reward_model(dir / "lm", at::kCPU, at::kFloat);  // lm_head dropped
  EXPECT_FALSE(fresh->pad_token_id());
  fresh->set_pad_token_id(0);
  save_reward_model(*fresh, dir / "rm");
  const nlohmann::json config = read_json_file(dir / "rm" / "config.json");
  EXPECT_EQ(config["architectures"][0], architecture);
  EXPECT_EQ(config["pad_token_id"], 0);
  const auto rm = load_reward_model(dir / "rm", at::kCPU, at::kFloat);
  ASSERT_EQ(rm->pad_token_id(), std::optional<std::int64_t>(0));
  // Sequence 3 holds pad tokens inside and at its end: HF scores its last non-pad token (17).
  const std::vector<std::vector<std::int64_t>> sequences = {
      {5, 6, 7, 8}, {9, 10, 11, 12, 13, 14, 15, 300, 4000}, {16, 0, 17, 0, 0}, {3}};
  const at::Tensor ours = rm->scores(sequences);
  EXPECT_TRUE(at::equal(ours, fresh->scores(sequences))) << "save/load round trip";
  const auto theirs = hf_scores("ids", dir / "rm", sequences, dir);
  ASSERT_EQ(theirs.size(), sequences.size());
  for (std::size_t i = 0; i < sequences.size(); ++i)
    EXPECT_NEAR(ours[static_cast<std::int64_t>(i)].item<double>(), theirs[i], 1e-4)
        << preset << " sequence " << i;
  // The trailing pads change nothing: the score is taken at the last non-pad token.
  EXPECT_NEAR(rm->scores({{16, 0, 17}})[0].item<double>(), ours[2].item<double>(), 1e-6);
}

TEST(RewardModel, ScoresMatchHfLlamaForSequenceClassification) {
  check_against_hf("tiny-llama", "LlamaForSequenceClassification");
}
TEST(RewardModel, ScoresMatchHfQwen2ForSequenceClassification) {
  check_against_hf("tiny-qwen2", "Qwen2ForSequenceClassification");
}
TEST(RewardModel, ScoresMatchHfDeepseekV3ForSequenceClassification) {
  check_against_hf("tiny-mla", "DeepseekV3ForSequenceClassification");
}

TEST(RewardModel, ScoredPairEndsAtTheAssistantEndMarker) {
  const auto tokenizer =
      Tokenizer::from_directory(testing_util::data_root() / "tokenizers" / "minimind");
  const auto ids = encode_scored_pair(tokenizer, ChatFormat::kChatML, "2+2?", "4 \n");
  EXPECT_EQ(tokenizer.decode(ids),
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4 \n<|im_end|>");
  EXPECT_EQ(ids.back(), *tokenizer.eos_id());
}

}  // namespace
}  // namespace ponder::model
