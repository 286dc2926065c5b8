#include "train/run_setup.h"

#include "core/error.h"
#include "core/json_file.h"
#include "core/log.h"
#include "datasets/countdown.h"
#include "datasets/eval_tasks.h"
#include "datasets/task.h"
#include "model/init_model.h"
#include "rewards/builtin.h"
#include "rewards/model_reward.h"

namespace ponder::train {

std::filesystem::path under_data(const std::string& path) {
  return std::filesystem::path(path).is_absolute() ? std::filesystem::path(path)
                                                   : datasets::data_root() / path;
}

at::Device resolve_device(const std::string& name, const std::string& field) {
  if (name == "auto") return at::hasCUDA() ? at::kCUDA : at::kCPU;
  if (name == "cpu") return at::kCPU;
  if (name == "cuda") {
    if (!at::hasCUDA()) throw Error(field + ": cuda, but no CUDA device is available");
    return at::kCUDA;
  }
  throw Error(field + ": '" + name + "' (expected auto | cpu | cuda)");
}

std::string fresh_run_dir(const std::string& run_dir) {
  std::string dir = run_dir;
  for (int n = 2; std::filesystem::exists(std::filesystem::path(dir) / "run.db"); ++n)
    dir = run_dir + "-" + std::to_string(n);
  if (dir != run_dir)
    log::info("{} holds an earlier run (resume it with --resume); writing to {}", run_dir, dir);
  return dir;
}

namespace {

TaskData eval_task_data(const DataSection& d) {
  const auto held_out = static_cast<std::size_t>(d.eval_size);
  const datasets::EvalTaskSpec spec = datasets::find_eval_task(d.task);
  TaskData out{datasets::load_eval_task(spec), {}, spec.reward, spec.reward_options};
  if (!d.eval_task.empty()) {
    const datasets::EvalTaskSpec eval = datasets::find_eval_task(d.eval_task);
    if (eval.reward != spec.reward)
      throw Error("data.eval_task: '" + d.eval_task + "' is scored by reward " + eval.reward +
                  ", data.task '" + d.task + "' by " + spec.reward);
    out.eval = datasets::load_eval_task(eval, held_out);
    out.reward_options = eval.reward_options;
    return out;
  }
  if (out.train.size() <= held_out)
    throw Error("data.eval_size: " + d.task + " has " + std::to_string(out.train.size()) +
                " items, too few to hold out " + std::to_string(held_out) +
                " and train on the rest");
  out.eval.assign(out.train.begin(), out.train.begin() + static_cast<std::ptrdiff_t>(held_out));
  out.train.erase(out.train.begin(), out.train.begin() + static_cast<std::ptrdiff_t>(held_out));
  return out;
}

}  // namespace

TaskData load_task_data(const DataSection& d, std::int64_t seed) {
  const auto s = static_cast<std::uint64_t>(seed);
  const auto held_out = static_cast<std::size_t>(d.eval_size);
  if (d.task == "arithmetic")
    return {datasets::arithmetic_examples(s, 20000, d.digits, d.worked_fraction),
            datasets::arithmetic_examples(s + 7919, held_out, d.digits, d.worked_fraction), "math"};
  if (d.task == "countdown")
    return {datasets::countdown_examples(s, 20000, d.numbers),
            datasets::countdown_examples(s + 7919, held_out, d.numbers), "countdown"};
  if (d.task != "gsm8k" && d.task != "math") {
    try {
      return eval_task_data(d);
    } catch (const Error& e) {
      throw Error("data.task: " + std::string(e.what()));
    }
  }
  if (d.train_file.empty()) throw Error("data.train_file: required for " + d.task);
  auto load = d.task == "gsm8k" ? datasets::load_gsm8k : datasets::load_math;
  TaskData out{load(under_data(d.train_file)), {}, "math"};
  if (!d.eval_file.empty()) out.eval = load(under_data(d.eval_file));
  if (out.eval.size() > held_out) out.eval.resize(held_out);
  return out;
}

const std::vector<datasets::Example>& require_heldout(const TaskData& data,
                                                      const DataSection& section) {
  if (data.eval.empty())
    throw Error("data: no held-out examples for " + section.task +
                " (set data.eval_file for gsm8k/math, data.eval_size > 0)");
  return data.eval;
}

std::vector<datasets::Example> heldout_examples(const DataSection& data, std::int64_t seed) {
  return require_heldout(load_task_data(data, seed), data);
}

const rewards::RewardRegistry& training_rewards() {
  static const rewards::RewardRegistry registry = [] {
    rewards::RewardRegistry r = rewards::builtin_rewards();
    rewards::register_model_rewards(r);
    return r;
  }();
  return registry;
}

ModelFiles resolve_model(const ModelSection& model, const std::filesystem::path& run_dir,
                         std::int64_t seed) {
  std::filesystem::path dir = model.path;
  if (dir.empty()) {
    dir = run_dir / "init";
    model::init_model(model::preset_config(model.preset), dir,
                      {.seed = static_cast<std::uint64_t>(seed)});
  }
  return {dir, std::filesystem::exists(dir / "tokenizer.json") ? dir : under_data(model.tokenizer)};
}

model::ChatFormat resolve_chat_format(const std::string& name,
                                      const std::filesystem::path& tokenizer_dir) {
  if (!name.empty()) return model::parse_chat_format(name);
  const auto config = tokenizer_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(config))
    throw Error(config.string() + ": missing; set data.chat_format to name the prompt format");
  return model::detect_chat_format(read_json_file(config));
}

model::LinearPrecision linear_precision(const TrainSection& train) {
  if (train.precision == "fp32") return model::LinearPrecision::kNative;
  if (train.precision == "bf16") return model::LinearPrecision::kBf16;
  if (train.precision == "fp8") return model::LinearPrecision::kFp8;
  throw Error("train.precision: unsupported value '" + train.precision +
              "' (expected one of: fp32, bf16, fp8)");
}

std::int64_t resolve_eos(const model::Tokenizer& tokenizer,
                         const std::optional<std::int64_t>& eos) {
  if (tokenizer.eos_id()) return *tokenizer.eos_id();
  if (eos) return *eos;
  throw Error("model and tokenizer define no EOS token");
}

}  // namespace ponder::train
