#include "train/recipe.h"

#include <fmt/core.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "tests/common/test_util.h"

namespace ponder::train {
namespace {

std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  testing_util::ScratchDir dir("recipe");
  std::ofstream(dir / "r.json") << text;
  try {
    load_recipe((dir / "r.json").string(), overrides);
  } catch (const Error& e) {
    const std::string what = e.what();
    return what.substr(what.find("r.json"));
  }
  return "";
}

TEST(Recipe, ErrorsNameTheFieldAndWhatWasExpected) {
  EXPECT_EQ(error_of(R"({"grpo": {"clip_hihg": 0.3}})"),
            "r.json: grpo.clip_hihg: unknown key; did you mean 'clip_high'?");
  EXPECT_EQ(error_of(R"({"steps": "ten"})"),
            "r.json: steps: expected an integer, got string \"ten\"");
  EXPECT_EQ(error_of("{\n  \"steps\": 3,\n}"),
            "r.json:3:1: invalid JSON: syntax error while parsing object key - unexpected '}'; "
            "expected string literal");
  EXPECT_EQ(error_of(R"({"grpo": {"kl_estimator": "k9"}})"),
            "r.json: grpo.kl_estimator: unsupported value 'k9' (expected one of: k1, k2, k3)");
  EXPECT_EQ(error_of(R"({"train": {"precision": "fp16"}})"),
            "r.json: train.precision: unsupported value 'fp16' (expected one of: fp32, bf16, fp8)");
  EXPECT_EQ(
      error_of(R"({"rollout": {"kv_cache_dtype": "int8"}})"),
      "r.json: rollout.kv_cache_dtype: unsupported value 'int8' (expected one of: auto, fp8)");
  EXPECT_EQ(error_of(R"({"rollout": {"dtype": "fp16"}})"),
            "r.json: rollout.dtype: unsupported value 'fp16' (expected one of: auto, bf16, fp32)");
  for (const char* share : {"0", "1", "1.5", "-0.2"})
    EXPECT_EQ(error_of("{}", {std::string("rollout.gpu_memory_utilization=") + share}),
              "r.json: rollout.gpu_memory_utilization: expected a share of free GPU memory in "
              "(0, 1), got " +
                  fmt::format("{}", std::stod(share)))
        << share;
  EXPECT_EQ(error_of("{}", {"rollout.n=1"}),
            "r.json: rollout.n: GRPO needs at least 2 samples per prompt");
  EXPECT_EQ(error_of("{}", {"rollout.prompts_per_step=0"}),
            "r.json: rollout.prompts_per_step: expected at least 1 prompt per step");
  EXPECT_EQ(error_of("{}", {"rollout.max_tokens=-3"}),
            "r.json: rollout.max_tokens: expected at least 1 token per response");
  EXPECT_EQ(error_of(R"({"rollout": {"release_kv_cache": "sometimes"}})"),
            "r.json: rollout.release_kv_cache: expected true or false, got string \"sometimes\"");
  EXPECT_THROW(load_recipe("/nonexistent/recipe.json", {}), Error);
}

TEST(Recipe, OverridesApplyAndShippedRecipesValidate) {
  const auto r = load_recipe("", {"optim.lr=0.5", "rewards=[{\"name\":\"math\",\"weight\":2}]"});
  EXPECT_DOUBLE_EQ(r.optim.lr, 0.5);
  EXPECT_DOUBLE_EQ(r.rewards.at(0).weight, 2.0);
  for (const char* name : {"quickstart", "r1-zero-gsm8k", "dapo-math", "smollm2-gsm8k"})
    EXPECT_NO_THROW(load_recipe(
        (std::filesystem::path(PONDER_SOURCE_DIR) / "recipes" / name).concat(".json").string(), {}))
        << name;
}

TEST(Recipe, BuiltInDefaultsAreTheQuickstartRecipe) {
  const auto shipped = load_recipe(
      (std::filesystem::path(PONDER_SOURCE_DIR) / "recipes" / "quickstart.json").string(), {});
  EXPECT_EQ(recipe_to_json(load_recipe("", {})), recipe_to_json(shipped));
}

}  // namespace
}  // namespace ponder::train
