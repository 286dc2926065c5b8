#include <fmt/core.h>

#include <fstream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_file.h"
#include "core/progress.h"
#include "model/gguf_convert.h"
#include "model/init_model.h"
#include "model/safetensors.h"

namespace ponder::cli {
namespace {

void add_init_model(CLI::App& app) {
  auto* cmd = app.add_subcommand("init-model", "Write a random-initialised model in HF layout");
  static std::string config_path, preset, out, tokenizer;
  static std::uint64_t seed = 0;
  static bool config_only = false;
  static std::string dtype = "float32", device = "cpu";
  auto* config_opt = cmd->add_option("--config", config_path, "HF config.json to instantiate");
  std::string presets;
  for (const auto& name : model::preset_names()) presets += (presets.empty() ? "" : ", ") + name;
  cmd->add_option("--preset", preset, "Named shape instead of --config: " + presets)
      ->excludes(config_opt);
  cmd->add_option("--out", out, "Output directory")->required();
  cmd->add_option("--seed", seed, "Random seed for the weights")->capture_default_str();
  cmd->add_option("--tokenizer", tokenizer, "Directory whose tokenizer*.json files are copied in");
  cmd->add_flag("--config-only", config_only,
                "Write config.json only (e.g. the DeepSeek-V3 shape)");
  cmd->add_option("--dtype", dtype, "Stored weight type")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_option("--device", device, "Where the weights are drawn (cpu, cuda)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->callback([] {
    if (config_path.empty() && preset.empty())
      throw Error("init-model: give --config FILE or --preset NAME");
    const auto config =
        config_path.empty() ? model::preset_config(preset) : read_json_file(config_path);
    model::InitOptions options{.seed = seed,
                               .config_only = config_only || preset == "deepseek-v3",
                               .dtype = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat,
                               .device = at::Device(device)};
    if (!tokenizer.empty()) options.tokenizer_dir = tokenizer;
    const auto c = model::init_model(config, out, options);
    fmt::print("init-model: {} {} layers, hidden {}, vocab {} -> {}\n", c.model_type,
               c.num_hidden_layers, c.hidden_size, c.vocab_size, out);
  });
}

void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  std::ofstream file(path);
  file << j.dump(2) << "\n";
  if (!file) throw Error(path.string() + ": write failed");
}

void add_convert(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("convert", "Import a GGUF model (llama architecture) into HF layout");
  static std::string gguf, out, dtype = "f32";
  cmd->add_option("--from-gguf", gguf, "GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors)")
      ->required();
  cmd->add_option("--out", out, "Output directory")->required();
  cmd->add_option("--dtype", dtype, "Stored dtype of the dequantised weights")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->callback([] {
    const model::GgufFile file(gguf);
    std::filesystem::create_directories(out);
    write_json(std::filesystem::path(out) / "config.json", model::gguf_llama_config(file));
    write_json(std::filesystem::path(out) / "tokenizer.json", model::gguf_tokenizer_json(file));
    write_json(std::filesystem::path(out) / "tokenizer_config.json",
               model::gguf_tokenizer_config(file));
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    Progress progress("convert", static_cast<std::int64_t>(file.tensors().size()), "tensors");
    for (const auto& t : file.tensors()) {
      auto hf = model::gguf_to_hf_tensor(file, t);
      at::Tensor tensor = at::tensor(hf.values).view(hf.shape);
      tensors.emplace_back(hf.name, dtype == "bf16" ? tensor.to(at::kBFloat16) : tensor);
      progress.advance();
    }
    progress.finish();
    model::save_safetensors(out, tensors);
    fmt::print("convert: {} tensors -> {}\n", tensors.size(), out);
  });
}

}  // namespace

void add_model_commands(CLI::App& app) {
  add_init_model(app);
  add_convert(app);
}

}  // namespace ponder::cli
