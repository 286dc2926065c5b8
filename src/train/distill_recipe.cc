#include "train/distill_recipe.h"

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "train/distill_loss.h"

namespace ponder::train {
namespace {

void check_positive(const char* field, std::int64_t value) {
  if (value <= 0) throw Error(std::string(field) + ": expected a positive integer");
}

void check(const DistillRecipe& r) {
  if (r.mode != "traces" && r.mode != "logits" && r.mode != "on_policy")
    throw Error("mode: unsupported value '" + r.mode +
                "' (expected one of: traces, logits, on_policy)");
  check_positive("sampling.n", r.sampling.n);
  check_positive("sampling.prompts_per_batch", r.sampling.prompts_per_batch);
  check_positive("sampling.max_tokens", r.sampling.max_tokens);
  if (r.rewards.empty()) throw Error("rewards: at least one reward is required");
  if (r.mode == "traces") return;
  parse_divergence(resolved_divergence(r));
  check_positive("top_k", r.top_k);
  check_positive("train.steps", r.train.steps);
  check_positive("train.batch_size", r.train.batch_size);
  check_positive("eval.n", r.eval.n);
  if (r.cache_dtype != "float16" && r.cache_dtype != "float32")
    throw Error("cache_dtype: unsupported value '" + r.cache_dtype +
                "' (expected one of: float16, float32)");
  if (r.optim.schedule != "constant" && r.optim.schedule != "cosine")
    throw Error("optim.schedule: unsupported value '" + r.optim.schedule +
                "' (expected one of: constant, cosine)");
}

}  // namespace

std::string resolved_divergence(const DistillRecipe& recipe) {
  if (!recipe.divergence.empty()) return recipe.divergence;
  return recipe.mode == "on_policy" ? "reverse_kl" : "forward_kl";
}

DistillRecipe load_distill_recipe(const std::string& path,
                                  const std::vector<std::string>& overrides) {
  nlohmann::json document = path.empty() ? nlohmann::json::object() : read_json_file(path);
  for (const auto& o : overrides) json_struct::apply_override(document, o);
  DistillRecipe recipe;
  try {
    json_struct::read(document, recipe, "");
    check(recipe);
  } catch (const Error& e) {
    throw Error((path.empty() ? std::string("recipe") : path) + ": " + e.what());
  }
  return recipe;
}

}  // namespace ponder::train
