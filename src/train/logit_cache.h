// The teacher's top-k log-probs cached on disk so logit distillation runs the teacher once: the
// token sequences it scored and, at every response position, its k best tokens plus the tail mass.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/distill_loss.h"

namespace ponder::train {

// File layout (little-endian), written and read only by this module:
//   bytes 0-7   magic "PNDLOGC1"
//   uint64      H, the length of the JSON header that follows
//   H bytes     JSON header: format "ponder-logit-cache", version 1, vocab_size, k, sequences S,
//               tokens N, positions P, logprob_dtype ("float16" | "float32"), tokenizer (FNV-1a
//               64 of the teacher's tokenizer.json, hex), checksum (FNV-1a 64 of the data, hex),
//               teacher (model directory), plus free-form provenance under "meta"
//   data:       int64 seq_offsets[S + 1]  token offsets: sequence s is tokens[off[s], off[s+1])
//               int64 prompt_lengths[S]   the first prompt_lengths[s] tokens are the prompt
//               int32 tokens[N]
//               int32 topk_ids[P * k]     row p = the p-th response token, sequences in order
//               f16|f32 topk_logprobs[P * k]
//               f32 tail[P]               1 - sum of exp(topk_logprobs) of the row
// The response position predicting token t of sequence s uses the teacher's distribution after
// tokens [0, t). P = sum over s of (length - prompt_length).
struct LogitCache {
  std::int64_t vocab_size = 0;
  std::string tokenizer;  // fingerprint of the tokenizer that made the token ids
  std::string teacher;
  nlohmann::json meta = nlohmann::json::object();
  std::vector<std::vector<std::int64_t>> prompts, responses;
  TeacherTopK topk;  // rows = response tokens of every sequence, in order
  std::vector<std::int64_t> row_offsets() const;  // [S + 1] first topk row of each sequence
};

// FNV-1a 64 of a file's bytes as 16 hex digits (the tokenizer fingerprint).
std::string file_fingerprint(const std::filesystem::path& path);

// Writes the cache; logprob_dtype float16 halves the dominant array (values clamp at -65504).
void write_logit_cache(const std::filesystem::path& path, const LogitCache& cache,
                       const std::string& logprob_dtype);

// Reads and validates a cache (magic, header fields, exact size, checksum, token ids < vocab,
// prompt lengths); throws ponder::Error naming the file and what is wrong.
LogitCache read_logit_cache(const std::filesystem::path& path);

// Throws when the cache was made for another vocabulary or tokenizer than the student's.
void check_cache_matches(const LogitCache& cache, const std::filesystem::path& path,
                         std::int64_t student_vocab, const std::string& student_tokenizer);

}  // namespace ponder::train
