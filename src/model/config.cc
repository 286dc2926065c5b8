#include "model/config.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "core/json_file.h"

namespace ponder::model {
namespace {

class Reader {
 public:
  Reader(const nlohmann::json& j, std::string source) : j_(j), source_(std::move(source)) {}

  template <class T>
  T get(const char* key, std::optional<T> fallback = std::nullopt) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (fallback) return *fallback;
      fail(key, "is required");
    }
    if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) fail(key, "expected true or false, got " + it->dump());
    } else if constexpr (std::is_integral_v<T>) {
      if (!it->is_number_integer()) fail(key, "expected an integer, got " + it->dump());
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!it->is_number()) fail(key, "expected a number, got " + it->dump());
    } else {
      if (!it->is_string()) fail(key, "expected a string, got " + it->dump());
    }
    return it->get<T>();
  }

  std::optional<std::int64_t> optional_int(const char* key) const {
    if (!j_.contains(key) || j_[key].is_null()) return std::nullopt;
    return get<std::int64_t>(key);
  }

  std::string one_of(const char* key, const std::string& fallback,
                     const std::set<std::string>& allowed) const {
    const std::string value = get<std::string>(key, fallback);
    if (!allowed.count(value)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(key, "unsupported value '" + value + "' (supported: " + list + ")");
    }
    return value;
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(source_ + ": " + key + ": " + what);
  }

  const nlohmann::json& json() const { return j_; }
  const std::string& source() const { return source_; }

 private:
  const nlohmann::json& j_;
  std::string source_;
};

RopeScaling read_rope_scaling(const Reader& outer) {
  RopeScaling rope;
  const nlohmann::json& j = outer.json();
  const char* key = j.contains("rope_scaling") ? "rope_scaling" : "rope_parameters";
  if (!j.contains(key) || j[key].is_null()) return rope;
  if (!j[key].is_object()) outer.fail(key, "expected an object or null");
  const Reader r(j[key], outer.source() + ": " + key);
  rope.type = r.json().contains("type") ? r.one_of("type", "default", {"default", "yarn"})
                                        : r.one_of("rope_type", "default", {"default", "yarn"});
  if (rope.type == "default") return rope;
  rope.factor = r.get<double>("factor");
  rope.original_max_position_embeddings = r.get<std::int64_t>("original_max_position_embeddings");
  rope.beta_fast = r.get<double>("beta_fast", 32.0);
  rope.beta_slow = r.get<double>("beta_slow", 1.0);
  rope.mscale = r.get<double>("mscale", 0.0);
  rope.mscale_all_dim = r.get<double>("mscale_all_dim", 0.0);
  return rope;
}

void read_mla_moe(const Reader& r, ModelConfig& c) {
  c.q_lora_rank = r.optional_int("q_lora_rank");
  c.kv_lora_rank = r.get<std::int64_t>("kv_lora_rank");
  c.qk_nope_head_dim = r.get<std::int64_t>("qk_nope_head_dim");
  c.qk_rope_head_dim = r.get<std::int64_t>("qk_rope_head_dim");
  c.v_head_dim = r.get<std::int64_t>("v_head_dim");
  c.n_routed_experts = r.optional_int("n_routed_experts").value_or(0);
  c.n_shared_experts = r.optional_int("n_shared_experts").value_or(0);
  c.num_experts_per_tok = r.optional_int("num_experts_per_tok").value_or(0);
  c.moe_intermediate_size = r.get<std::int64_t>("moe_intermediate_size", 0);
  const bool v3 = c.model_type == "deepseek_v3";
  c.topk_method = r.one_of("topk_method", v3 ? "noaux_tc" : "greedy",
                           {"greedy", "group_limited_greedy", "noaux_tc"});
  c.scoring_func = r.one_of("scoring_func", v3 ? "sigmoid" : "softmax", {"softmax", "sigmoid"});
  c.n_group = r.optional_int("n_group").value_or(1);
  c.topk_group = r.optional_int("topk_group").value_or(1);
  c.norm_topk_prob = r.get<bool>("norm_topk_prob", false);
  c.routed_scaling_factor = r.get<double>("routed_scaling_factor", 1.0);
  c.first_k_dense_replace = r.get<std::int64_t>("first_k_dense_replace", 0);
  c.moe_layer_freq = r.get<std::int64_t>("moe_layer_freq", 1);
  c.num_nextn_predict_layers = r.get<std::int64_t>("num_nextn_predict_layers", 0);
  if (c.n_routed_experts > 0) {
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.n_routed_experts)
      r.fail("num_experts_per_tok", "must be in [1, n_routed_experts]");
    if (c.n_routed_experts % c.n_group != 0) r.fail("n_group", "must divide n_routed_experts");
    if (c.topk_group > c.n_group) r.fail("topk_group", "must be <= n_group");
    if (c.moe_layer_freq < 1) r.fail("moe_layer_freq", "must be >= 1");
  }
}

}  // namespace

bool ModelConfig::is_moe_layer(std::int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

double ModelConfig::attention_scale() const {
  const double head = is_mla() ? static_cast<double>(qk_head_dim()) : static_cast<double>(head_dim);
  double scale = 1.0 / std::sqrt(head);
  if (is_mla() && rope_scaling.type == "yarn" && rope_scaling.mscale_all_dim != 0 &&
      rope_scaling.factor > 1) {
    const double m = 0.1 * rope_scaling.mscale_all_dim * std::log(rope_scaling.factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw Error(source + ": expected a JSON object");
  const Reader r(j, source);
  ModelConfig c;
  c.model_type = r.one_of("model_type", "", {"deepseek_v2", "deepseek_v3", "llama", "qwen2"});
  r.one_of("hidden_act", "silu", {"silu"});
  c.vocab_size = r.get<std::int64_t>("vocab_size");
  c.hidden_size = r.get<std::int64_t>("hidden_size");
  c.intermediate_size = r.get<std::int64_t>("intermediate_size");
  c.num_hidden_layers = r.get<std::int64_t>("num_hidden_layers");
  c.num_attention_heads = r.get<std::int64_t>("num_attention_heads");
  c.num_key_value_heads = r.optional_int("num_key_value_heads").value_or(c.num_attention_heads);
  c.head_dim = r.optional_int("head_dim").value_or(c.hidden_size / c.num_attention_heads);
  c.max_position_embeddings = r.get<std::int64_t>("max_position_embeddings", 2048);
  c.rms_norm_eps = r.get<double>("rms_norm_eps", 1e-6);
  c.rope_theta = j.contains("rope_theta")
                     ? r.get<double>("rope_theta")
                     : j.value("/rope_parameters/rope_theta"_json_pointer, 10000.0);
  c.rope_scaling = read_rope_scaling(r);
  c.tie_word_embeddings = r.get<bool>("tie_word_embeddings", false);
  c.attention_bias = r.get<bool>("attention_bias", false);
  c.bos_token_id = r.optional_int("bos_token_id");
  c.eos_token_id = r.optional_int("eos_token_id");
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    r.fail("num_key_value_heads", "must divide num_attention_heads");
  if (c.is_mla()) read_mla_moe(r, c);
  return c;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path.string());
}

}  // namespace ponder::model

namespace ponder::model {
namespace {

std::string architecture_name(const std::string& model_type) {
  if (model_type == "deepseek_v2") return "DeepseekV2ForCausalLM";
  if (model_type == "deepseek_v3") return "DeepseekV3ForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

}  // namespace

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = {{"architectures", {architecture_name(model_type)}},
                      {"model_type", model_type},
                      {"hidden_act", "silu"},
                      {"vocab_size", vocab_size},
                      {"hidden_size", hidden_size},
                      {"intermediate_size", intermediate_size},
                      {"num_hidden_layers", num_hidden_layers},
                      {"num_attention_heads", num_attention_heads},
                      {"num_key_value_heads", num_key_value_heads},
                      {"max_position_embeddings", max_position_embeddings},
                      {"rms_norm_eps", rms_norm_eps},
                      {"rope_theta", rope_theta},
                      {"tie_word_embeddings", tie_word_embeddings},
                      {"attention_bias", attention_bias},
                      {"torch_dtype", "float32"}};
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  if (rope_scaling.type == "yarn")
    j["rope_scaling"] = {
        {"type", "yarn"},
        {"factor", rope_scaling.factor},
        {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings},
        {"beta_fast", rope_scaling.beta_fast},
        {"beta_slow", rope_scaling.beta_slow},
        {"mscale", rope_scaling.mscale},
        {"mscale_all_dim", rope_scaling.mscale_all_dim}};
  if (!is_mla()) {
    j["head_dim"] = head_dim;
    if (model_type == "qwen2") j["use_sliding_window"] = false;
    return j;
  }
  j["q_lora_rank"] = q_lora_rank ? nlohmann::json(*q_lora_rank) : nlohmann::json(nullptr);
  j.update({{"kv_lora_rank", kv_lora_rank},
            {"qk_nope_head_dim", qk_nope_head_dim},
            {"qk_rope_head_dim", qk_rope_head_dim},
            {"v_head_dim", v_head_dim},
            {"n_routed_experts", n_routed_experts},
            {"n_shared_experts", n_shared_experts},
            {"num_experts_per_tok", num_experts_per_tok},
            {"moe_intermediate_size", moe_intermediate_size},
            {"topk_method", topk_method},
            {"scoring_func", scoring_func},
            {"n_group", n_group},
            {"topk_group", topk_group},
            {"norm_topk_prob", norm_topk_prob},
            {"routed_scaling_factor", routed_scaling_factor},
            {"first_k_dense_replace", first_k_dense_replace},
            {"moe_layer_freq", moe_layer_freq},
            {"num_nextn_predict_layers", num_nextn_predict_layers},
            {"rope_interleave", true}});
  return j;
}

}  // namespace ponder::model
