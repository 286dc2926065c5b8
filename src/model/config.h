// ModelConfig: every architecture field ponder's models use, read once from a Hugging Face
// config.json (deepseek_v2, deepseek_v3, llama, qwen2) and passed down explicitly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace ponder::model {

struct RopeScaling {
  std::string type = "default";  // "default" or "yarn"
  double factor = 1.0;
  std::int64_t original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;
  double mscale_all_dim = 0.0;
};

struct ModelConfig {
  std::string model_type;  // deepseek_v2 | deepseek_v3 | llama | qwen2
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t num_hidden_layers = 0;
  std::int64_t num_attention_heads = 0;
  std::int64_t num_key_value_heads = 0;
  std::int64_t head_dim = 0;  // GQA models
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama o/q/k/v bias; qwen2 always has q/k/v bias
  std::optional<std::int64_t> bos_token_id;
  std::optional<std::int64_t> eos_token_id;

  // MLA (DeepSeek)
  std::optional<std::int64_t> q_lora_rank;  // nullopt: direct q projection (DeepSeek-V2-Lite)
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;
  std::int64_t v_head_dim = 0;

  // DeepSeekMoE
  std::int64_t n_routed_experts = 0;  // 0: dense model
  std::int64_t n_shared_experts = 0;
  std::int64_t num_experts_per_tok = 0;
  std::int64_t moe_intermediate_size = 0;
  std::string topk_method = "greedy";    // greedy | group_limited_greedy | noaux_tc
  std::string scoring_func = "softmax";  // softmax | sigmoid
  std::int64_t n_group = 1;
  std::int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  std::int64_t first_k_dense_replace = 0;
  std::int64_t moe_layer_freq = 1;
  std::int64_t num_nextn_predict_layers = 0;

  bool is_mla() const { return model_type == "deepseek_v2" || model_type == "deepseek_v3"; }
  bool is_moe_layer(std::int64_t layer) const;
  std::int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Softmax scale including YaRN's mscale_all_dim correction for MLA.
  double attention_scale() const;

  // Fails with "config.json: FIELD: ..." for missing, mistyped or unsupported values.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& source = "config.json");
  static ModelConfig from_file(const std::filesystem::path& path);
  nlohmann::json to_json() const;
};

}  // namespace ponder::model
