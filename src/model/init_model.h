// `ponder init-model`: random-initialised models in Hugging Face layout (config.json +
// safetensors [+ tokenizer files]) from a config or a named preset — how tests get models.
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace ponder::model {

// Presets: tiny-mla, tiny-llama, tiny-qwen2, deepseek-v2-lite, deepseek-v3 (config only).
nlohmann::json preset_config(const std::string& name);
std::vector<std::string> preset_names();

// Every parameter the architecture has, with its shape, under HF names.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> parameter_shapes(
    const ModelConfig& c);

struct InitOptions {
  std::uint64_t seed = 0;
  std::optional<std::filesystem::path> tokenizer_dir;  // copies tokenizer*.json from here
  bool config_only = false;
  // Weights are drawn in FP32 on `device` (a GPU draws a large model in seconds) and stored as
  // `dtype`; the DeepSeek-V3 routing bias stays FP32.
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
};

// Writes OUT_DIR/config.json and (unless config_only) random weights. Returns the config.
ModelConfig init_model(const nlohmann::json& config_json, const std::filesystem::path& out_dir,
                       const InitOptions& options);

}  // namespace ponder::model
