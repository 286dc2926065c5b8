#include "train/logit_cache.h"

#include <fmt/core.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace ponder::train {
namespace {

constexpr char kMagic[8] = {'P', 'N', 'D', 'L', 'O', 'G', 'C', '1'};
constexpr const char* kFormat = "ponder-logit-cache";
constexpr int kVersion = 1;

std::uint64_t fnv1a(const char* data, std::size_t size) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::string hex(std::uint64_t value) { return fmt::format("{:016x}", value); }

template <class T>
void append(std::string& out, const T* data, std::size_t count) {
  out.append(reinterpret_cast<const char*>(data), count * sizeof(T));
}

void append_tensor(std::string& out, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

// Reads consecutive arrays from the data section, failing on a short file.
struct Reader {
  const std::string& bytes;
  std::size_t offset;
  const std::filesystem::path& path;
  at::Tensor take(at::ScalarType dtype, std::int64_t count) {
    const auto size = static_cast<std::size_t>(count) * at::elementSize(dtype);
    if (offset + size > bytes.size())
      throw Error(path.string() + ": logit cache is truncated (corrupt or partly written)");
    at::Tensor t = at::empty({count}, dtype);
    std::memcpy(t.data_ptr(), bytes.data() + offset, size);
    offset += size;
    return t;
  }
};

std::int64_t field(const nlohmann::json& header, const char* name,
                   const std::filesystem::path& path) {
  if (!header.contains(name) || !header[name].is_number_integer() || header[name].get<long>() < 0)
    throw Error(path.string() + ": logit cache header lacks a non-negative integer '" + name + "'");
  return header[name].get<std::int64_t>();
}

std::vector<std::int64_t> to_vector(const at::Tensor& t) {
  return {t.data_ptr<std::int64_t>(), t.data_ptr<std::int64_t>() + t.numel()};
}

// Splits tokens into prompts and responses, checking offsets and prompt lengths.
void split_sequences(LogitCache& cache, const std::vector<std::int64_t>& offsets,
                     const std::vector<std::int64_t>& prompt_lengths, const at::Tensor& tokens,
                     const std::filesystem::path& path) {
  const auto* ids = tokens.data_ptr<std::int32_t>();
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s) {
    const std::int64_t begin = offsets[s], end = offsets[s + 1], prompt = prompt_lengths[s];
    if (begin < 0 || end < begin || end > tokens.numel() || prompt < 1 || prompt > end - begin)
      throw Error(fmt::format("{}: logit cache sequence {} has bad offsets or prompt length",
                              path.string(), s));
    cache.prompts.emplace_back(ids + begin, ids + begin + prompt);
    cache.responses.emplace_back(ids + begin + prompt, ids + end);
  }
}

}  // namespace

std::vector<std::int64_t> LogitCache::row_offsets() const {
  std::vector<std::int64_t> rows = {0};
  for (const auto& r : responses) rows.push_back(rows.back() + static_cast<std::int64_t>(r.size()));
  return rows;
}

std::string file_fingerprint(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot read");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return hex(fnv1a(bytes.data(), bytes.size()));
}

void write_logit_cache(const std::filesystem::path& path, const LogitCache& cache,
                       const std::string& logprob_dtype) {
  if (logprob_dtype != "float16" && logprob_dtype != "float32")
    throw Error("cache_dtype: expected float16 or float32, got '" + logprob_dtype + "'");
  const bool half = logprob_dtype == "float16";
  std::vector<std::int64_t> offsets = {0}, prompt_lengths;
  std::vector<std::int32_t> tokens;
  for (std::size_t s = 0; s < cache.prompts.size(); ++s) {
    for (const auto* part : {&cache.prompts[s], &cache.responses[s]})
      for (const auto id : *part) tokens.push_back(static_cast<std::int32_t>(id));
    offsets.push_back(static_cast<std::int64_t>(tokens.size()));
    prompt_lengths.push_back(static_cast<std::int64_t>(cache.prompts[s].size()));
  }
  std::string data;
  append(data, offsets.data(), offsets.size());
  append(data, prompt_lengths.data(), prompt_lengths.size());
  append(data, tokens.data(), tokens.size());
  append_tensor(data, cache.topk.ids.to(at::kInt));
  const at::Tensor logprobs = cache.topk.logprobs.to(at::kFloat);
  append_tensor(data, half ? logprobs.clamp_min(-65504).to(at::kHalf) : logprobs);
  append_tensor(data, cache.topk.tail.to(at::kFloat));
  const nlohmann::json header = {{"format", kFormat},
                                 {"version", kVersion},
                                 {"vocab_size", cache.vocab_size},
                                 {"k", cache.topk.ids.size(1)},
                                 {"sequences", cache.prompts.size()},
                                 {"tokens", tokens.size()},
                                 {"positions", cache.topk.ids.size(0)},
                                 {"logprob_dtype", logprob_dtype},
                                 {"tokenizer", cache.tokenizer},
                                 {"teacher", cache.teacher},
                                 {"checksum", hex(fnv1a(data.data(), data.size()))},
                                 {"meta", cache.meta}};
  const std::string text = header.dump();
  const std::uint64_t length = text.size();
  const auto partial = std::filesystem::path(path.string() + ".partial");
  {
    std::ofstream out(partial, std::ios::binary);
    out.write(kMagic, sizeof kMagic);
    out.write(reinterpret_cast<const char*>(&length), sizeof length);
    out << text << data;
    if (!out) throw Error(partial.string() + ": cannot write the logit cache");
  }
  std::filesystem::rename(partial, path);
}

LogitCache read_logit_cache(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot read the logit cache");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::uint64_t length = 0;
  if (bytes.size() < sizeof kMagic + sizeof length ||
      std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw Error(path.string() + ": not a ponder logit cache (bad magic)");
  std::memcpy(&length, bytes.data() + sizeof kMagic, sizeof length);
  const std::size_t data_start = sizeof kMagic + sizeof length + length;
  if (data_start > bytes.size()) throw Error(path.string() + ": logit cache header is truncated");
  const auto header = nlohmann::json::parse(bytes.substr(sizeof kMagic + sizeof length, length),
                                            nullptr, /*allow_exceptions=*/false);
  if (!header.is_object() || header.value("format", "") != kFormat ||
      header.value("version", 0) != kVersion)
    throw Error(fmt::format("{}: logit cache header is not {} version {}", path.string(), kFormat,
                            kVersion));
  const std::string dtype = header.value("logprob_dtype", "");
  if (dtype != "float16" && dtype != "float32")
    throw Error(path.string() + ": logit cache logprob_dtype must be float16 or float32");
  if (header.value("checksum", "") !=
      hex(fnv1a(bytes.data() + data_start, bytes.size() - data_start)))
    throw Error(path.string() + ": logit cache checksum mismatch (corrupt or partly written)");
  LogitCache cache;
  cache.vocab_size = field(header, "vocab_size", path);
  const std::int64_t k = field(header, "k", path), sequences = field(header, "sequences", path);
  const std::int64_t positions = field(header, "positions", path);
  cache.tokenizer = header.value("tokenizer", "");
  cache.teacher = header.value("teacher", "");
  cache.meta = header.value("meta", nlohmann::json::object());
  Reader r{bytes, data_start, path};
  const auto offsets = to_vector(r.take(at::kLong, sequences + 1));
  const auto prompt_lengths = to_vector(r.take(at::kLong, sequences));
  const at::Tensor tokens = r.take(at::kInt, field(header, "tokens", path));
  cache.topk.ids = r.take(at::kInt, positions * k).reshape({positions, k}).to(at::kLong);
  cache.topk.logprobs = r.take(dtype == "float16" ? at::kHalf : at::kFloat, positions * k)
                            .reshape({positions, k})
                            .to(at::kFloat);
  cache.topk.tail = r.take(at::kFloat, positions);
  if (r.offset != bytes.size())
    throw Error(path.string() + ": logit cache has trailing bytes after its data");
  split_sequences(cache, offsets, prompt_lengths, tokens, path);
  if (cache.row_offsets().back() != positions)
    throw Error(path.string() + ": logit cache positions do not match its response tokens");
  const bool ids_ok = tokens.numel() == 0 || (tokens.min().item<std::int64_t>() >= 0 &&
                                              tokens.max().item<std::int64_t>() < cache.vocab_size);
  if (!ids_ok || (positions > 0 && (cache.topk.ids.min().item<std::int64_t>() < 0 ||
                                    cache.topk.ids.max().item<std::int64_t>() >= cache.vocab_size)))
    throw Error(path.string() + ": logit cache holds token ids outside its vocabulary");
  return cache;
}

void check_cache_matches(const LogitCache& cache, const std::filesystem::path& path,
                         std::int64_t student_vocab, const std::string& student_tokenizer) {
  if (cache.vocab_size != student_vocab)
    throw Error(fmt::format(
        "{}: logit cache was made for a vocabulary of {} tokens, the student has {}; teacher and "
        "student must share a tokenizer",
        path.string(), cache.vocab_size, student_vocab));
  if (cache.tokenizer != student_tokenizer)
    throw Error(fmt::format(
        "{}: logit cache was made with tokenizer {} but the student's tokenizer.json is {}; "
        "teacher and student must share a tokenizer",
        path.string(), cache.tokenizer, student_tokenizer));
}

}  // namespace ponder::train
