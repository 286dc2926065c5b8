#include "model/config.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "model/init_model.h"

namespace ponder::model {
namespace {

std::string error_of(nlohmann::json j) {
  try {
    ModelConfig::from_json(j, "config.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, ReadsDeepSeekV3PresetFields) {
  const ModelConfig c = ModelConfig::from_json(preset_config("deepseek-v3"));
  EXPECT_EQ(c.q_lora_rank, 1536);
  EXPECT_EQ(c.topk_method, "noaux_tc");
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_TRUE(c.is_moe_layer(3));
  EXPECT_FALSE(c.is_moe_layer(2));
  // 1/sqrt(192) * (0.1 * 1.0 * ln 40 + 1)^2, DeepSeek-V3's softmax scale
  const double m = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c.attention_scale(), m * m / std::sqrt(192.0), 1e-12);
}

TEST(ModelConfig, V2LiteHasNoQueryCompression) {
  const ModelConfig c = ModelConfig::from_json(preset_config("deepseek-v2-lite"));
  EXPECT_FALSE(c.q_lora_rank.has_value());
  EXPECT_EQ(c.n_routed_experts, 64);
}

TEST(ModelConfig, UnsupportedValuesNameTheField) {
  auto j = preset_config("tiny-mla");
  j["topk_method"] = "random";
  EXPECT_EQ(error_of(j),
            "config.json: topk_method: unsupported value 'random' (supported: greedy, "
            "group_limited_greedy, noaux_tc)");
  j = preset_config("tiny-llama");
  j["model_type"] = "gpt2";
  EXPECT_NE(error_of(j).find("model_type: unsupported value 'gpt2'"), std::string::npos);
  j = preset_config("tiny-llama");
  j.erase("hidden_size");
  EXPECT_EQ(error_of(j), "config.json: hidden_size: is required");
  j = preset_config("tiny-llama");
  j["num_attention_heads"] = "four";
  EXPECT_EQ(error_of(j), "config.json: num_attention_heads: expected an integer, got \"four\"");
}

TEST(ModelConfig, RoundTripsThroughToJson) {
  for (const auto& name : preset_names()) {
    const ModelConfig c = ModelConfig::from_json(preset_config(name));
    EXPECT_EQ(ModelConfig::from_json(c.to_json()).to_json(), c.to_json()) << name;
  }
}

}  // namespace
}  // namespace ponder::model
