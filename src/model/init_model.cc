#include "model/init_model.h"

#include <ATen/ATen.h>

#include <fstream>

#include "core/error.h"
#include "model/safetensors.h"

namespace ponder::model {
namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;

nlohmann::json tiny_dense(const std::string& type) {
  return {{"model_type", type},
          {"vocab_size", 6400},
          {"hidden_size", 128},
          {"intermediate_size", 256},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"max_position_embeddings", 4096},
          {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

void add_mlp(Shapes& s, const std::string& prefix, std::int64_t hidden, std::int64_t inner) {
  s.push_back({prefix + ".gate_proj.weight", {inner, hidden}});
  s.push_back({prefix + ".up_proj.weight", {inner, hidden}});
  s.push_back({prefix + ".down_proj.weight", {hidden, inner}});
}

void add_attention(Shapes& s, const ModelConfig& c, const std::string& p) {
  const std::int64_t h = c.hidden_size, heads = c.num_attention_heads;
  if (!c.is_mla()) {
    const std::int64_t q = heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
    const bool bias = c.attention_bias || c.model_type == "qwen2";
    for (const auto& [name, out] : {std::pair{"q_proj", q}, {"k_proj", kv}, {"v_proj", kv}}) {
      s.push_back({p + "." + name + ".weight", {out, h}});
      if (bias) s.push_back({p + "." + name + ".bias", {out}});
    }
    s.push_back({p + ".o_proj.weight", {h, q}});
    if (c.attention_bias) s.push_back({p + ".o_proj.bias", {h}});
    return;
  }
  if (c.q_lora_rank) {
    s.push_back({p + ".q_a_proj.weight", {*c.q_lora_rank, h}});
    s.push_back({p + ".q_a_layernorm.weight", {*c.q_lora_rank}});
    s.push_back({p + ".q_b_proj.weight", {heads * c.qk_head_dim(), *c.q_lora_rank}});
  } else {
    s.push_back({p + ".q_proj.weight", {heads * c.qk_head_dim(), h}});
  }
  s.push_back({p + ".kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, h}});
  s.push_back({p + ".kv_a_layernorm.weight", {c.kv_lora_rank}});
  s.push_back(
      {p + ".kv_b_proj.weight", {heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}});
  s.push_back({p + ".o_proj.weight", {h, heads * c.v_head_dim}});
}

void copy_tokenizer(const std::filesystem::path& from, const std::filesystem::path& to) {
  bool copied = false;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    if (!std::filesystem::exists(from / name)) continue;
    std::filesystem::copy_file(from / name, to / name,
                               std::filesystem::copy_options::overwrite_existing);
    copied = true;
  }
  if (!copied) throw Error(from.string() + ": no tokenizer.json to copy");
}

}  // namespace

std::vector<std::string> preset_names() {
  return {"tiny-mla", "tiny-llama", "tiny-qwen2", "deepseek-v2-lite", "deepseek-v3"};
}

nlohmann::json preset_config(const std::string& name) {
  if (name == "tiny-llama") return tiny_dense("llama");
  if (name == "tiny-qwen2") return tiny_dense("qwen2");
  if (name == "tiny-mla")
    return {{"model_type", "deepseek_v3"},
            {"vocab_size", 6400},
            {"hidden_size", 128},
            {"intermediate_size", 256},
            {"moe_intermediate_size", 64},
            {"num_hidden_layers", 4},
            {"num_attention_heads", 4},
            {"num_key_value_heads", 4},
            {"q_lora_rank", 64},
            {"kv_lora_rank", 64},
            {"qk_nope_head_dim", 32},
            {"qk_rope_head_dim", 16},
            {"v_head_dim", 32},
            {"n_routed_experts", 8},
            {"n_shared_experts", 1},
            {"num_experts_per_tok", 2},
            {"n_group", 2},
            {"topk_group", 1},
            {"topk_method", "noaux_tc"},
            {"scoring_func", "sigmoid"},
            {"norm_topk_prob", true},
            {"routed_scaling_factor", 1.0},
            {"first_k_dense_replace", 1},
            {"moe_layer_freq", 1},
            {"max_position_embeddings", 4096},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"tie_word_embeddings", false},
            {"bos_token_id", 1},
            {"eos_token_id", 2}};
  if (name == "deepseek-v2-lite")
    return {{"model_type", "deepseek_v2"},
            {"vocab_size", 102400},
            {"hidden_size", 2048},
            {"intermediate_size", 10944},
            {"moe_intermediate_size", 1408},
            {"num_hidden_layers", 27},
            {"num_attention_heads", 16},
            {"num_key_value_heads", 16},
            {"q_lora_rank", nullptr},
            {"kv_lora_rank", 512},
            {"qk_nope_head_dim", 128},
            {"qk_rope_head_dim", 64},
            {"v_head_dim", 128},
            {"n_routed_experts", 64},
            {"n_shared_experts", 2},
            {"num_experts_per_tok", 6},
            {"n_group", 1},
            {"topk_group", 1},
            {"topk_method", "greedy"},
            {"scoring_func", "softmax"},
            {"norm_topk_prob", false},
            {"routed_scaling_factor", 1.0},
            {"first_k_dense_replace", 1},
            {"moe_layer_freq", 1},
            {"max_position_embeddings", 163840},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"rope_scaling",
             {{"type", "yarn"},
              {"factor", 40},
              {"original_max_position_embeddings", 4096},
              {"beta_fast", 32},
              {"beta_slow", 1},
              {"mscale", 0.707},
              {"mscale_all_dim", 0.707}}},
            {"tie_word_embeddings", false},
            {"bos_token_id", 100000},
            {"eos_token_id", 100001}};
  if (name == "deepseek-v3")
    return {{"model_type", "deepseek_v3"},
            {"vocab_size", 129280},
            {"hidden_size", 7168},
            {"intermediate_size", 18432},
            {"moe_intermediate_size", 2048},
            {"num_hidden_layers", 61},
            {"num_attention_heads", 128},
            {"num_key_value_heads", 128},
            {"q_lora_rank", 1536},
            {"kv_lora_rank", 512},
            {"qk_nope_head_dim", 128},
            {"qk_rope_head_dim", 64},
            {"v_head_dim", 128},
            {"n_routed_experts", 256},
            {"n_shared_experts", 1},
            {"num_experts_per_tok", 8},
            {"n_group", 8},
            {"topk_group", 4},
            {"topk_method", "noaux_tc"},
            {"scoring_func", "sigmoid"},
            {"norm_topk_prob", true},
            {"routed_scaling_factor", 2.5},
            {"first_k_dense_replace", 3},
            {"moe_layer_freq", 1},
            {"num_nextn_predict_layers", 1},
            {"max_position_embeddings", 163840},
            {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},
            {"rope_scaling",
             {{"type", "yarn"},
              {"factor", 40},
              {"original_max_position_embeddings", 4096},
              {"beta_fast", 32},
              {"beta_slow", 1},
              {"mscale", 1.0},
              {"mscale_all_dim", 1.0}}},
            {"tie_word_embeddings", false},
            {"bos_token_id", 0},
            {"eos_token_id", 1}};
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model preset '" + name + "' (known: " + known + ")");
}

Shapes parameter_shapes(const ModelConfig& c) {
  Shapes s = {{"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}}};
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    s.push_back({p + ".input_layernorm.weight", {c.hidden_size}});
    s.push_back({p + ".post_attention_layernorm.weight", {c.hidden_size}});
    add_attention(s, c, p + ".self_attn");
    if (!c.is_moe_layer(l)) {
      add_mlp(s, p + ".mlp", c.hidden_size, c.intermediate_size);
      continue;
    }
    s.push_back({p + ".mlp.gate.weight", {c.n_routed_experts, c.hidden_size}});
    if (c.topk_method == "noaux_tc")
      s.push_back({p + ".mlp.gate.e_score_correction_bias", {c.n_routed_experts}});
    for (std::int64_t e = 0; e < c.n_routed_experts; ++e)
      add_mlp(s, p + ".mlp.experts." + std::to_string(e), c.hidden_size, c.moe_intermediate_size);
    if (c.n_shared_experts > 0)
      add_mlp(s, p + ".mlp.shared_experts", c.hidden_size,
              c.moe_intermediate_size * c.n_shared_experts);
  }
  s.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) s.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return s;
}

ModelConfig init_model(const nlohmann::json& config_json, const std::filesystem::path& out_dir,
                       const InitOptions& options) {
  const ModelConfig config = ModelConfig::from_json(config_json, "model config");
  std::filesystem::create_directories(out_dir);
  std::ofstream(out_dir / "config.json") << config.to_json().dump(2) << "\n";
  if (options.tokenizer_dir) copy_tokenizer(*options.tokenizer_dir, out_dir);
  if (options.config_only) return config;
  at::Generator generator = options.device.is_cpu()
                                ? at::detail::createCPUGenerator(options.seed)
                                : at::globalContext().defaultGenerator(options.device).clone();
  generator.set_current_seed(options.seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options.device);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, shape] : parameter_shapes(config)) {
    // Norm weights near 1 and a small routing bias, both perturbed so tests exercise them.
    const bool is_norm = name.ends_with("norm.weight");
    const bool is_bias = name.ends_with(".bias") || name.ends_with("correction_bias");
    const double std = is_norm ? 0.1 : (is_bias ? 0.02 : 0.05);
    at::Tensor t = at::normal(0.0, std, shape, generator, f32);
    if (is_norm) t += 1.0;
    const bool keep_fp32 = name.ends_with("correction_bias");
    tensors.emplace_back(name, t.to(at::kCPU, keep_fp32 ? at::kFloat : options.dtype));
  }
  save_safetensors(out_dir, tensors);
  return config;
}

}  // namespace ponder::model
