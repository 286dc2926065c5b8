// Hugging Face `tokenizer.json` byte-level BPE (GPT-2, DeepSeek-V3, Qwen, Llama-3 style): added
// and special tokens, Split/Digits/ByteLevel pre-tokenizers (PCRE2), BPE merges, decoding.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ponder::model {

class PreTokenizer;

class Tokenizer {
 public:
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json);
  // tokenizer.json plus tokenizer_config.json (bos/eos token names) when present.
  static Tokenizer from_directory(const std::filesystem::path& dir);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  std::vector<std::int64_t> encode(std::string_view text, bool add_special_tokens = false) const;
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = false) const;
  // Raw bytes of one token (added tokens give their content); may be a partial UTF-8 sequence.
  std::string token_bytes(std::int64_t id) const;

  std::optional<std::int64_t> token_to_id(const std::string& token) const;
  std::string id_to_token(std::int64_t id) const;
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(id_to_token_.size()); }
  bool is_special(std::int64_t id) const;
  std::optional<std::int64_t> bos_id() const { return bos_id_; }
  std::optional<std::int64_t> eos_id() const { return eos_id_; }

 private:
  struct AddedToken {
    std::string content;
    std::int64_t id;
    bool special;
  };
  Tokenizer() = default;
  void load(const nlohmann::json& j, const std::string& source);
  void encode_ordinary(std::string_view text, std::vector<std::int64_t>& out) const;
  void bpe(const std::string& word, std::vector<std::int64_t>& out) const;
  void merge(const std::string& word, std::vector<std::int64_t>& out) const;
  const AddedToken* added_at(std::string_view text, std::size_t i) const;

  std::unordered_map<std::string, std::int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, std::int32_t> merge_ranks_;  // "a b" -> rank
  std::vector<AddedToken> added_;                              // longest first
  // added_ indices by their content's first byte, longest first: the scan at each text byte
  // compares only the tokens that can start there.
  std::array<std::vector<std::size_t>, 256> added_by_first_byte_;
  std::vector<bool> special_, added_id_;
  struct WordCache;  // pre-tokenized word -> ids, shared by threads
  std::unique_ptr<WordCache> word_cache_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::vector<std::string> prefix_tokens_;  // TemplateProcessing single: specials before text
  bool ignore_merges_ = false;
  std::optional<std::int64_t> bos_id_, eos_id_;
};

// Streams decoded text token by token without ever emitting half a UTF-8 character.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = true)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(std::int64_t id);
  // Whatever is still pending (invalid bytes become U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace ponder::model
