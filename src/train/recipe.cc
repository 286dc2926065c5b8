#include "train/recipe.h"

#include <set>

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "train/run_setup.h"

namespace ponder::train {
namespace {

void require_one_of(const std::string& field, const std::string& value,
                    const std::set<std::string>& allowed) {
  if (allowed.count(value)) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  throw Error(field + ": unsupported value '" + value + "' (expected one of: " + list + ")");
}

}  // namespace

GrpoRecipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  nlohmann::json document = path.empty() ? nlohmann::json::object() : read_json_file(path);
  for (const auto& o : overrides) json_struct::apply_override(document, o);
  GrpoRecipe recipe;
  const std::string source = path.empty() ? "built-in quickstart" : path;
  try {
    json_struct::read(document, recipe, "");
    require_one_of("data.task", recipe.data.task, {"arithmetic", "gsm8k", "math"});
    require_one_of("grpo.loss_aggregation", recipe.grpo.loss_aggregation,
                   {"token_mean", "sequence_mean", "constant"});
    require_one_of("grpo.kl_estimator", recipe.grpo.kl_estimator, {"k1", "k2", "k3"});
    require_one_of("optim.schedule", recipe.optim.schedule, {"constant", "cosine"});
    linear_precision(recipe.train);
    if (recipe.rollout.n < 2) throw Error("rollout.n: GRPO needs at least 2 samples per prompt");
    if (recipe.eval.n < 1) throw Error("eval.n: expected at least 1 sample per prompt");
    if (recipe.eval.temperature <= 0 && recipe.eval.n != 1)
      throw Error("eval.n: greedy evaluation (eval.temperature 0) takes exactly 1 sample");
    if (recipe.rewards.empty()) throw Error("rewards: at least one reward is required");
  } catch (const Error& e) {
    throw Error(source + ": " + e.what());
  }
  return recipe;
}

nlohmann::json recipe_to_json(const GrpoRecipe& recipe) { return json_struct::write(recipe); }

}  // namespace ponder::train
