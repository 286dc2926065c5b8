#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <limits>
#include <mutex>

#include "core/error.h"
#include "core/json_file.h"

namespace ponder::model {
namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's reversible byte -> printable character table.
struct ByteTable {
  std::array<std::string, 256> encode;
  std::unordered_map<std::uint32_t, std::uint8_t> decode;
  ByteTable() {
    std::uint32_t next = 256;
    for (std::uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const std::uint32_t cp = printable ? b : next++;
      append_utf8(encode[b], cp);
      decode[cp] = static_cast<std::uint8_t>(b);
    }
  }
};

const ByteTable& byte_table() {
  static const ByteTable table;
  return table;
}

std::size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> chars;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = std::min(utf8_length(static_cast<unsigned char>(s[i])), s.size() - i);
    chars.push_back(s.substr(i, n));
    i += n;
  }
  return chars;
}

std::uint32_t decode_codepoint(const std::string& ch) {
  const auto* p = reinterpret_cast<const unsigned char*>(ch.data());
  if (ch.size() == 1) return p[0];
  if (ch.size() == 2) return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
  if (ch.size() == 3) return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  return ((p[0] & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
}

}  // namespace

// A pre-tokenizer refines a list of pieces into smaller pieces; the last one (ByteLevel) also
// maps bytes to GPT-2's printable characters.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<std::string>& pieces) const = 0;
};

namespace {

enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };

class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    const std::uint32_t flags = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), flags,
                          &error, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      throw Error(where + ": invalid regex at offset " + std::to_string(offset) + ": " +
                  reinterpret_cast<char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-overlapping matches as [begin, end) byte ranges. Match data is per call (thread-safe).
  std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const {
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(code_, nullptr);
    std::size_t start = 0;
    while (start <= text.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(),
                                 start, PCRE2_NO_UTF_CHECK, match, nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
      if (ov[1] == ov[0]) {  // empty match: step one character
        start =
            ov[0] + utf8_length(static_cast<unsigned char>(text[std::min(ov[0], text.size() - 1)]));
        if (text.empty()) break;
        continue;
      }
      ranges.emplace_back(ov[0], ov[1]);
      start = ov[1];
    }
    pcre2_match_data_free(match);
    return ranges;
  }

 private:
  pcre2_code* code_ = nullptr;
};

std::vector<std::string> split_by(const Regex& regex, const std::string& piece, Behavior behavior) {
  std::vector<std::string> out;
  std::size_t last = 0;
  std::string carry;  // for kMergedWithNext
  for (const auto& [begin, end] : regex.find_all(piece)) {
    if (begin > last) out.push_back(carry + piece.substr(last, begin - last)), carry.clear();
    const std::string matched = piece.substr(begin, end - begin);
    switch (behavior) {
      case Behavior::kIsolated:
        out.push_back(matched);
        break;
      case Behavior::kRemoved:
        break;
      case Behavior::kMergedWithPrevious:
        if (out.empty())
          out.push_back(matched);
        else
          out.back() += matched;
        break;
      case Behavior::kMergedWithNext:
        carry += matched;
        break;
    }
    last = end;
  }
  if (last < piece.size() || !carry.empty()) out.push_back(carry + piece.substr(last));
  return out;
}

class SplitPre : public PreTokenizer {
 public:
  SplitPre(const std::string& pattern, bool literal, Behavior behavior, const std::string& where)
      : regex_(pattern, literal, where), behavior_(behavior) {}
  void apply(std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    for (const auto& piece : pieces)
      for (auto& p : split_by(regex_, piece, behavior_)) out.push_back(std::move(p));
    pieces.swap(out);
  }

 private:
  Regex regex_;
  Behavior behavior_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern, false, where) : nullptr) {}
  void apply(std::vector<std::string>& pieces) const override {
    std::vector<std::string> out;
    for (auto piece : pieces) {
      if (add_prefix_space_ && !piece.starts_with(' ')) piece.insert(piece.begin(), ' ');
      const auto parts =
          regex_ ? split_by(*regex_, piece, Behavior::kIsolated) : std::vector<std::string>{piece};
      for (const auto& part : parts) {
        std::string mapped;
        for (unsigned char b : part) mapped += byte_table().encode[b];
        out.push_back(std::move(mapped));
      }
    }
    pieces.swap(out);
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::vector<std::string>& pieces) const override {
    for (const auto& step : steps_) step->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  throw Error(where + ": behavior '" + name + "' is not supported");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j,
                                                 const std::string& where) {
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (std::size_t i = 0; i < j.at("pretokenizers").size(); ++i)
      steps.push_back(make_pre_tokenizer(j["pretokenizers"][i],
                                         where + ".pretokenizers[" + std::to_string(i) + "]"));
    return std::make_unique<SequencePre>(std::move(steps));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPre>(j.value("add_prefix_space", false),
                                          j.value("use_regex", true), where);
  if (type == "Split") {
    if (j.value("invert", false)) throw Error(where + ": inverted Split is not supported");
    const auto& pattern = j.at("pattern");
    const bool literal = pattern.contains("String");
    return std::make_unique<SplitPre>(
        literal ? pattern["String"].get<std::string>() : pattern.at("Regex").get<std::string>(),
        literal, parse_behavior(j.value("behavior", "Isolated"), where), where);
  }
  if (type == "Digits")
    return std::make_unique<SplitPre>(
        j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)", false, Behavior::kIsolated,
        where);
  throw Error(where + ": pre-tokenizer type '" + type +
              "' is not supported (Sequence, Split, Digits, ByteLevel)");
}

}  // namespace

// Words repeat (" the", digits, code indentation), and merging is quadratic in a word's length.
struct Tokenizer::WordCache {
  static constexpr std::size_t kMaxEntries = 1 << 16;
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::int64_t>> ids;
};

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  Tokenizer t;
  t.load(read_json_file(path), path.string());
  return t;
}

Tokenizer Tokenizer::from_directory(const std::filesystem::path& dir) {
  Tokenizer t = from_file(dir / "tokenizer.json");
  const auto config_path = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) return t;
  const auto config = read_json_file(config_path);
  auto token_name = [&](const char* key) -> std::optional<std::string> {
    if (!config.contains(key) || config[key].is_null()) return std::nullopt;
    const auto& v = config[key];
    return v.is_string() ? v.get<std::string>() : v.value("content", std::string());
  };
  if (auto bos = token_name("bos_token")) t.bos_id_ = t.token_to_id(*bos);
  if (auto eos = token_name("eos_token")) t.eos_id_ = t.token_to_id(*eos);
  return t;
}

void Tokenizer::load(const nlohmann::json& j, const std::string& source) {
  const auto& model = j.at("model");
  if (model.value("type", "") != "BPE")
    throw Error(source + ": model.type '" + model.value("type", "") +
                "' is not supported (BPE only)");
  const auto& normalizer = j.value("normalizer", nlohmann::json());
  if (!normalizer.is_null() &&
      !(normalizer.value("type", "") == "Sequence" && normalizer["normalizers"].empty()))
    throw Error(source + ": normalizer " + normalizer.value("type", "?") + " is not supported");
  for (const auto& [token, id] : model.at("vocab").items()) {
    const auto index = id.get<std::int64_t>();
    if (index >= static_cast<std::int64_t>(id_to_token_.size())) id_to_token_.resize(index + 1);
    id_to_token_[index] = token;
    vocab_[token] = index;
  }
  std::int32_t rank = 0;
  for (const auto& merge : model.at("merges")) {
    const std::string key = merge.is_string()
                                ? merge.get<std::string>()
                                : merge[0].get<std::string>() + " " + merge[1].get<std::string>();
    merge_ranks_.emplace(key, rank++);
  }
  ignore_merges_ = model.value("ignore_merges", false);
  for (const auto& added : j.value("added_tokens", nlohmann::json::array())) {
    if (added.value("lstrip", false) || added.value("rstrip", false) ||
        added.value("single_word", false))
      throw Error(source + ": added token " + added["content"].dump() +
                  ": lstrip/rstrip/single_word unsupported");
    AddedToken token{added.at("content"), added.at("id"), added.value("special", false)};
    if (token.id >= static_cast<std::int64_t>(id_to_token_.size()))
      id_to_token_.resize(token.id + 1);
    id_to_token_[token.id] = token.content;
    vocab_[token.content] = token.id;
    added_.push_back(token);
  }
  std::sort(added_.begin(), added_.end(),
            [](auto& a, auto& b) { return a.content.size() > b.content.size(); });
  special_.assign(id_to_token_.size(), false);
  added_id_.assign(id_to_token_.size(), false);
  for (std::size_t i = 0; i < added_.size(); ++i) {
    special_[added_[i].id] = added_[i].special;
    added_id_[added_[i].id] = true;
    if (!added_[i].content.empty())
      added_by_first_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(i);
  }
  word_cache_ = std::make_unique<WordCache>();
  const auto& pre = j.value("pre_tokenizer", nlohmann::json());
  if (pre.is_null()) throw Error(source + ": pre_tokenizer: a ByteLevel pre-tokenizer is required");
  pre_tokenizer_ = make_pre_tokenizer(pre, source + ": pre_tokenizer");
  const auto& post = j.value("post_processor", nlohmann::json());
  if (!post.is_null() && post.value("type", "") == "TemplateProcessing")
    for (const auto& item : post.at("single")) {
      if (item.contains("Sequence")) break;
      prefix_tokens_.push_back(item.at("SpecialToken").at("id"));
    }
}

void Tokenizer::bpe(const std::string& word, std::vector<std::int64_t>& out) const {
  {
    const std::lock_guard<std::mutex> lock(word_cache_->mutex);
    if (auto it = word_cache_->ids.find(word); it != word_cache_->ids.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::int64_t> ids;
  merge(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  const std::lock_guard<std::mutex> lock(word_cache_->mutex);
  if (word_cache_->ids.size() >= WordCache::kMaxEntries) word_cache_->ids.clear();
  word_cache_->ids.emplace(word, std::move(ids));
}

void Tokenizer::merge(const std::string& word, std::vector<std::int64_t>& out) const {
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) return out.push_back(it->second);
  }
  std::vector<std::string> symbols = utf8_chars(word);
  while (symbols.size() > 1) {
    std::int32_t best = std::numeric_limits<std::int32_t>::max();
    std::string best_key;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = merge_ranks_.find(symbols[i] + " " + symbols[i + 1]);
      if (it != merge_ranks_.end() && it->second < best) {
        best = it->second;
        best_key = it->first;
      }
    }
    if (best_key.empty()) break;
    const auto space = best_key.find(' ');
    const std::string left = best_key.substr(0, space), right = best_key.substr(space + 1);
    std::vector<std::string> merged;
    for (std::size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        merged.push_back(left + right);
        ++i;
      } else {
        merged.push_back(symbols[i]);
      }
    }
    symbols.swap(merged);
  }
  for (const auto& s : symbols) {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) throw Error("tokenizer: symbol '" + s + "' is not in the vocabulary");
    out.push_back(it->second);
  }
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<std::int64_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string> pieces = {std::string(text)};
  pre_tokenizer_->apply(pieces);
  for (const auto& piece : pieces)
    if (!piece.empty()) bpe(piece, out);
}

std::vector<std::int64_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<std::int64_t> out;
  if (add_special_tokens)
    for (const auto& name : prefix_tokens_) out.push_back(vocab_.at(name));
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const AddedToken* hit = added_at(text, i);
    if (!hit) {
      ++i;
      continue;
    }
    encode_ordinary(text.substr(start, i - start), out);
    out.push_back(hit->id);
    i += hit->content.size();
    start = i;
  }
  encode_ordinary(text.substr(start), out);
  return out;
}

const Tokenizer::AddedToken* Tokenizer::added_at(std::string_view text, std::size_t i) const {
  for (const std::size_t a : added_by_first_byte_[static_cast<unsigned char>(text[i])])
    if (text.compare(i, added_[a].content.size(), added_[a].content) == 0) return &added_[a];
  return nullptr;
}

std::string Tokenizer::token_bytes(std::int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("tokenizer: id " + std::to_string(id) + " is out of range");
  if (special_[id] || added_id_[id]) return id_to_token_[id];
  std::string bytes;
  for (const auto& ch : utf8_chars(id_to_token_[id])) {
    auto it = byte_table().decode.find(decode_codepoint(ch));
    bytes += it != byte_table().decode.end() ? std::string(1, static_cast<char>(it->second)) : ch;
  }
  return bytes;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids,
                              bool skip_special_tokens) const {
  std::string text;
  for (auto id : ids)
    if (!(skip_special_tokens && is_special(id))) text += token_bytes(id);
  return text;
}

std::optional<std::int64_t> Tokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? std::nullopt : std::optional<std::int64_t>(it->second);
}

std::string Tokenizer::id_to_token(std::int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("tokenizer: id " + std::to_string(id) + " is out of range");
  return id_to_token_[id];
}

bool Tokenizer::is_special(std::int64_t id) const {
  return id >= 0 && id < static_cast<std::int64_t>(special_.size()) && special_[id];
}

std::string StreamingDecoder::push(std::int64_t id) {
  if (skip_special_ && tokenizer_.is_special(id)) return "";
  pending_ += tokenizer_.token_bytes(id);
  // Emit every complete, valid character; stray or invalid bytes become U+FFFD so the text is
  // always valid UTF-8; an incomplete tail waits for the next token.
  std::string ready;
  std::size_t i = 0;
  while (i < pending_.size()) {
    const auto lead = static_cast<unsigned char>(pending_[i]);
    const std::size_t n = lead < 0x80 ? 1 : (lead >= 0xC2 && lead <= 0xF4) ? utf8_length(lead) : 0;
    if (n == 0) {
      ready += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (i + n > pending_.size()) break;
    bool valid = true;
    for (std::size_t k = 1; k < n; ++k)
      valid &= (static_cast<unsigned char>(pending_[i + k]) & 0xC0) == 0x80;
    ready += valid ? pending_.substr(i, n) : "\xEF\xBF\xBD";
    i += valid ? n : 1;
  }
  pending_.erase(0, i);
  return ready;
}

std::string StreamingDecoder::flush() {
  std::string rest;
  for (unsigned char c : pending_)
    rest += c < 0x80 ? std::string(1, static_cast<char>(c)) : "\xEF\xBF\xBD";
  pending_.clear();
  return rest;
}

}  // namespace ponder::model
