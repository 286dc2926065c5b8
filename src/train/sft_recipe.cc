#include "train/sft_recipe.h"

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "model/chat_template.h"
#include "train/run_setup.h"

namespace ponder::train {
namespace {

void check_positive(const char* field, std::int64_t value) {
  if (value <= 0) throw Error(std::string(field) + ": expected a positive integer");
}

template <class Data>
void check_common(const Data& data, const OptimSection& optim, std::int64_t epochs) {
  if (data.train_file.empty()) throw Error("data.train_file: required");
  if (data.eval_fraction < 0 || data.eval_fraction >= 1)
    throw Error("data.eval_fraction: expected a value in [0, 1)");
  if (!data.chat_format.empty()) model::parse_chat_format(data.chat_format);
  check_positive("data.max_seq_len", data.max_seq_len);
  check_positive("epochs", epochs);
  if (optim.schedule != "constant" && optim.schedule != "cosine")
    throw Error("optim.schedule: unsupported value '" + optim.schedule +
                "' (expected one of: constant, cosine)");
}

template <class Recipe, class Check>
Recipe load(const std::string& path, const std::vector<std::string>& overrides, Check check) {
  nlohmann::json document = path.empty() ? nlohmann::json::object() : read_json_file(path);
  for (const auto& o : overrides) json_struct::apply_override(document, o);
  Recipe recipe;
  try {
    json_struct::read(document, recipe, "");
    check_common(recipe.data, recipe.optim, recipe.epochs);
    check(recipe);
  } catch (const Error& e) {
    throw Error((path.empty() ? std::string("recipe") : path) + ": " + e.what());
  }
  return recipe;
}

}  // namespace

SftRecipe load_sft_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  return load<SftRecipe>(path, overrides, [](const SftRecipe& r) {
    check_positive("batch_tokens", r.batch_tokens);
    linear_precision(r.train);
    if (r.data.max_seq_len > r.batch_tokens)
      throw Error("data.max_seq_len: " + std::to_string(r.data.max_seq_len) +
                  " does not fit in batch_tokens (" + std::to_string(r.batch_tokens) + ")");
  });
}

RmRecipe load_rm_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  return load<RmRecipe>(path, overrides, [](const RmRecipe& r) {
    check_positive("pairs_per_step", r.pairs_per_step);
    if (r.data.eval_file.empty() && r.data.eval_fraction <= 0)
      throw Error("data.eval_fraction: held-out pairs are required (set eval_file or a fraction)");
  });
}

}  // namespace ponder::train
