#include "model/gguf_convert.h"

#include <regex>

#include "core/error.h"

namespace ponder::model {
namespace {

constexpr int kControlToken = 3;

void require_llama(const GgufFile& file) {
  const std::string arch = file.at("general.architecture");
  if (arch != "llama")
    throw Error(file.path().string() + ": GGUF architecture '" + arch +
                "' is not supported (supported: llama)");
}

nlohmann::json pre_tokenizer(const GgufFile& file) {
  const std::string pre = file.metadata().value("tokenizer.ggml.pre", std::string("default"));
  nlohmann::json byte_level = {{"type", "ByteLevel"},
                               {"add_prefix_space", false},
                               {"trim_offsets", true},
                               {"use_regex", true}};
  if (pre == "default" || pre == "gpt2") return byte_level;
  if (pre == "smollm")
    return {{"type", "Sequence"},
            {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level}}};
  throw Error(file.path().string() + ": tokenizer.ggml.pre '" + pre +
              "' is not supported (supported: default, gpt2, smollm)");
}

std::string token_at(const GgufFile& file, const char* key) {
  const auto& tokens = file.at("tokenizer.ggml.tokens");
  if (!file.metadata().contains(key)) return "";
  return tokens.at(file.at(key).get<std::size_t>());
}

// llama.cpp stores q/k rows per head as [pairs interleaved]; HF wants [first halves, second
// halves]. Row r of head h at (h, i, 2) order maps back to (h, 2, i).
std::vector<float> undo_rotary_permutation(const std::vector<float>& w, std::int64_t rows,
                                           std::int64_t cols, std::int64_t heads) {
  const std::int64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < half; ++i)
      for (std::int64_t p = 0; p < 2; ++p) {
        const std::int64_t src = (h * half + i) * 2 + p, dst = (h * 2 + p) * half + i;
        std::copy_n(w.begin() + src * cols, cols, out.begin() + dst * cols);
      }
  return out;
}

}  // namespace

nlohmann::json gguf_llama_config(const GgufFile& file) {
  require_llama(file);
  const auto get = [&](const char* key) { return file.at(std::string("llama.") + key); };
  const auto& meta = file.metadata();
  const bool tied = std::none_of(file.tensors().begin(), file.tensors().end(),
                                 [](const GgufTensor& t) { return t.name == "output.weight"; });
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", get("embedding_length")},
          {"intermediate_size", get("feed_forward_length")},
          {"num_hidden_layers", get("block_count")},
          {"num_attention_heads", get("attention.head_count")},
          {"num_key_value_heads",
           meta.value("llama.attention.head_count_kv", get("attention.head_count"))},
          {"max_position_embeddings", get("context_length")},
          {"rms_norm_eps", get("attention.layer_norm_rms_epsilon")},
          {"rope_theta", meta.value("llama.rope.freq_base", 10000.0)},
          {"vocab_size", file.at("tokenizer.ggml.tokens").size()},
          {"bos_token_id", meta.value("tokenizer.ggml.bos_token_id", 1)},
          {"eos_token_id", meta.value("tokenizer.ggml.eos_token_id", 2)},
          {"tie_word_embeddings", tied},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"torch_dtype", "float32"}};
}

nlohmann::json gguf_tokenizer_json(const GgufFile& file) {
  if (file.at("tokenizer.ggml.model") != "gpt2")
    throw Error(file.path().string() + ": tokenizer.ggml.model '" +
                file.at("tokenizer.ggml.model").get<std::string>() +
                "' is not supported (supported: gpt2 byte-level BPE)");
  const auto& tokens = file.at("tokenizer.ggml.tokens");
  const auto& types = file.at("tokenizer.ggml.token_type");
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (std::size_t id = 0; id < tokens.size(); ++id) {
    vocab[tokens[id].get<std::string>()] = id;
    if (types.at(id) == kControlToken)
      added.push_back({{"id", id},
                       {"content", tokens[id]},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", true}});
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", pre_tokenizer(file)},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", vocab},
            {"merges", file.at("tokenizer.ggml.merges")}}}};
}

nlohmann::json gguf_tokenizer_config(const GgufFile& file) {
  const auto& meta = file.metadata();
  return {{"bos_token", token_at(file, "tokenizer.ggml.bos_token_id")},
          {"eos_token", token_at(file, "tokenizer.ggml.eos_token_id")},
          {"pad_token", token_at(file, "tokenizer.ggml.padding_token_id")},
          {"unk_token", token_at(file, "tokenizer.ggml.unknown_token_id")},
          {"add_bos_token", meta.value("tokenizer.ggml.add_bos_token", false)},
          {"chat_template", meta.value("tokenizer.chat_template", std::string())},
          // Not GPT2Tokenizer: transformers 5 rebuilds that class's pipeline from vocab and
          // merges, dropping pre-tokenizer steps such as SmolLM2's digit split. The generic
          // class loads tokenizer.json exactly as written.
          {"tokenizer_class", "PreTrainedTokenizerFast"},
          {"model_max_length", meta.value("llama.context_length", 2048)}};
}

HfTensor gguf_to_hf_tensor(const GgufFile& file, const GgufTensor& tensor) {
  static const std::vector<std::pair<std::regex, std::string>> kNames = {
      {std::regex(R"(token_embd\.weight)"), "model.embed_tokens.weight"},
      {std::regex(R"(output_norm\.weight)"), "model.norm.weight"},
      {std::regex(R"(output\.weight)"), "lm_head.weight"},
      {std::regex(R"(blk\.(\d+)\.attn_norm\.weight)"), "model.layers.$1.input_layernorm.weight"},
      {std::regex(R"(blk\.(\d+)\.ffn_norm\.weight)"),
       "model.layers.$1.post_attention_layernorm.weight"},
      {std::regex(R"(blk\.(\d+)\.attn_q\.weight)"), "model.layers.$1.self_attn.q_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.attn_k\.weight)"), "model.layers.$1.self_attn.k_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.attn_v\.weight)"), "model.layers.$1.self_attn.v_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.attn_output\.weight)"), "model.layers.$1.self_attn.o_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.ffn_gate\.weight)"), "model.layers.$1.mlp.gate_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.ffn_up\.weight)"), "model.layers.$1.mlp.up_proj.weight"},
      {std::regex(R"(blk\.(\d+)\.ffn_down\.weight)"), "model.layers.$1.mlp.down_proj.weight"},
  };
  HfTensor out;
  for (const auto& [pattern, replacement] : kNames) {
    if (!std::regex_match(tensor.name, pattern)) continue;
    out.name = std::regex_replace(tensor.name, pattern, replacement);
    break;
  }
  if (out.name.empty())
    throw Error(file.path().string() + ": tensor " + tensor.name + " has no Llama counterpart");
  out.shape = tensor.shape;
  out.values = file.dequantize(tensor);
  const bool is_q = out.name.ends_with("q_proj.weight"), is_k = out.name.ends_with("k_proj.weight");
  if (is_q || is_k) {
    const auto heads =
        file.at(is_q ? "llama.attention.head_count" : "llama.attention.head_count_kv")
            .get<std::int64_t>();
    out.values = undo_rotary_permutation(out.values, out.shape[0], out.shape[1], heads);
  }
  return out;
}

}  // namespace ponder::model
