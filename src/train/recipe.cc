#include "train/recipe.h"

#include <fmt/core.h>

#include <set>

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "datasets/eval_tasks.h"
#include "model/causal_lm.h"
#include "train/rollout_model.h"
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
    if (!std::set<std::string>{"arithmetic", "countdown", "gsm8k", "math"}.count(recipe.data.task))
      try {
        datasets::find_eval_task(recipe.data.task);
      } catch (const Error& e) {
        throw Error("data.task: " + std::string(e.what()) +
                    " (synthetic: arithmetic, countdown; jsonl: gsm8k, math)");
      }
    require_one_of("grpo.loss_aggregation", recipe.grpo.loss_aggregation,
                   {"token_mean", "sequence_mean", "constant"});
    require_one_of("grpo.kl_estimator", recipe.grpo.kl_estimator, {"k1", "k2", "k3"});
    require_one_of("optim.schedule", recipe.optim.schedule, {"constant", "cosine"});
    require_one_of("train.device", recipe.train.device, {"auto", "cpu", "cuda"});
    linear_precision(recipe.train);
    model::parse_kv_cache_dtype(recipe.rollout.kv_cache_dtype, "rollout.kv_cache_dtype");
    rollout_dtype(recipe.rollout.dtype, at::kCPU);
    if (!(recipe.rollout.gpu_memory_utilization > 0 && recipe.rollout.gpu_memory_utilization < 1))
      throw Error(fmt::format(
          "rollout.gpu_memory_utilization: expected a share of free GPU memory in (0, 1), got {}",
          recipe.rollout.gpu_memory_utilization));
    if (recipe.train.micro_batch_size < 0)
      throw Error("train.micro_batch_size: expected 0 (whole minibatch) or a positive count");
    if (recipe.optim.balance_loss_coef < 0)
      throw Error("optim.balance_loss_coef: expected a non-negative weight");
    if (recipe.rollout.off_policy_steps != 0 && recipe.rollout.off_policy_steps != 1)
      throw Error("rollout.off_policy_steps: expected 0 (on-policy) or 1 (one step off-policy)");
    if (recipe.rollout.n < 2) throw Error("rollout.n: GRPO needs at least 2 samples per prompt");
    if (recipe.rollout.prompts_per_step < 1)
      throw Error("rollout.prompts_per_step: expected at least 1 prompt per step");
    if (recipe.rollout.max_tokens < 1)
      throw Error("rollout.max_tokens: expected at least 1 token per response");
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
