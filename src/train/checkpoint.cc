#include "train/checkpoint.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <c10/core/GradMode.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "model/safetensors.h"
#include "model/transformer.h"

namespace ponder::train {
namespace {

constexpr const char* kStateFile = "trainer_state.json";  // written last: marks completeness
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kGeneratorFile = "generator.safetensors";

std::optional<std::int64_t> step_of(const std::filesystem::path& dir) {
  const std::string name = dir.filename().string();
  if (!name.starts_with("step-")) return std::nullopt;
  try {
    std::size_t used = 0;
    const std::int64_t step = std::stoll(name.substr(5), &used);
    if (used == name.size() - 5) return step;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

void copy_tokenizer_files(const std::filesystem::path& from, const std::filesystem::path& to) {
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"})
    if (std::filesystem::exists(from / file))
      std::filesystem::copy_file(from / file, to / file,
                                 std::filesystem::copy_options::overwrite_existing);
}

std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir,
                                      const CheckpointContents& contents) {
  const auto root = run_dir / "checkpoints";
  const auto final_dir = root / ("step-" + std::to_string(contents.state.step));
  const auto temp_dir = root / (".tmp-step-" + std::to_string(contents.state.step));
  std::filesystem::remove_all(temp_dir);
  model::save_causal_lm(contents.policy, temp_dir);
  copy_tokenizer_files(contents.tokenizer_dir, temp_dir);
  std::vector<std::pair<std::string, at::Tensor>> moments;
  for (std::size_t i = 0; i < contents.trainable_names.size(); ++i) {
    moments.emplace_back("exp_avg." + contents.trainable_names[i], contents.optimizer.exp_avg[i]);
    moments.emplace_back("exp_avg_sq." + contents.trainable_names[i],
                         contents.optimizer.exp_avg_sq[i]);
  }
  moments.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  model::write_safetensors_file(temp_dir / kOptimizerFile, moments);
  if (contents.generator)
    model::write_safetensors_file(temp_dir / kGeneratorFile,
                                  contents.generator->named_parameters());
  const nlohmann::json state = {{"step", contents.state.step},
                                {"cursor", contents.state.cursor},
                                {"optimizer_steps", contents.optimizer.steps},
                                {"accuracy_before_rl", contents.state.accuracy_before_rl},
                                {"accuracy", contents.state.accuracy}};
  std::ofstream(temp_dir / kStateFile) << state.dump(2) << "\n";
  std::filesystem::remove_all(final_dir);
  std::filesystem::rename(temp_dir, final_dir);
  return final_dir;
}

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir) {
  const auto root = run_dir / "checkpoints";
  if (!std::filesystem::is_directory(root)) return std::nullopt;
  std::optional<std::filesystem::path> best;
  std::int64_t best_step = -1;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (entry.path().filename().string().starts_with(".tmp-")) {
      std::filesystem::remove_all(entry.path());
      continue;
    }
    const auto step = step_of(entry.path());
    if (step && *step > best_step && std::filesystem::exists(entry.path() / kStateFile)) {
      best = entry.path();
      best_step = *step;
    }
  }
  return best;
}

bool load_generator_weights(const std::filesystem::path& checkpoint, model::CausalLM& generator) {
  if (!std::filesystem::exists(checkpoint / kGeneratorFile)) return false;
  const model::SafetensorsFile weights(checkpoint / kGeneratorFile);
  at::NoGradGuard no_grad;
  for (auto& [name, tensor] : generator.named_parameters()) {
    if (!weights.contains(name))
      throw Error(weights.path().string() + ": missing generation weight '" + name + "'");
    const at::Tensor saved = weights.load(name, tensor.scalar_type());
    if (!saved.sizes().equals(tensor.sizes()))
      throw Error(weights.path().string() + ": '" + name + "' has the wrong shape");
    tensor.copy_(saved);
  }
  return true;
}

TrainerState load_trainer_state(const std::filesystem::path& checkpoint,
                                const std::vector<std::string>& trainable_names,
                                AdamWState& optimizer) {
  const nlohmann::json j = read_json_file(checkpoint / kStateFile);
  TrainerState state;
  try {
    state = {j.at("step").get<std::int64_t>(), j.at("cursor").get<std::uint64_t>(),
             j.at("accuracy_before_rl").get<double>(), j.at("accuracy").get<double>()};
    optimizer.steps = j.at("optimizer_steps").get<std::int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error((checkpoint / kStateFile).string() + ": " + e.what());
  }
  const model::SafetensorsFile moments(checkpoint / kOptimizerFile);
  for (std::size_t i = 0; i < trainable_names.size(); ++i) {
    const std::string& name = trainable_names[i];
    for (auto [prefix, tensors] : {std::pair{"exp_avg.", &optimizer.exp_avg},
                                   std::pair{"exp_avg_sq.", &optimizer.exp_avg_sq}}) {
      if (!moments.contains(prefix + name))
        throw Error(moments.path().string() + ": missing optimizer state '" + prefix + name + "'");
      const at::Tensor saved = moments.load(prefix + name, at::kFloat);
      if (!saved.sizes().equals((*tensors)[i].sizes()))
        throw Error(moments.path().string() + ": '" + prefix + name + "' has the wrong shape");
      (*tensors)[i].copy_(saved);
    }
  }
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(moments.load("rng.cpu", at::kByte));
  return state;
}

}  // namespace ponder::train
