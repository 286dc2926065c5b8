#include "train/run_setup.h"

#include "core/error.h"
#include "core/json_file.h"
#include "core/log.h"
#include "datasets/task.h"
#include "model/init_model.h"

namespace ponder::train {

std::filesystem::path under_data(const std::string& path) {
  return std::filesystem::path(path).is_absolute() ? std::filesystem::path(path)
                                                   : datasets::data_root() / path;
}

std::string fresh_run_dir(const std::string& run_dir) {
  std::string dir = run_dir;
  for (int n = 2; std::filesystem::exists(std::filesystem::path(dir) / "run.db"); ++n)
    dir = run_dir + "-" + std::to_string(n);
  if (dir != run_dir)
    log::info("{} holds an earlier run (resume it with --resume); writing to {}", run_dir, dir);
  return dir;
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
