// SFT data: chat jsonl (`messages`) tokenized turn by turn with an assistant-token mask, and
// sequence packing into fixed-token batches (cu_seqlens boundaries) with the masked NLL loss.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace ponder::train {

// One tokenized conversation. trained[t] is 1 when ids[t] is written by the assistant (the loss
// predicts it from ids[..t-1]); prompts, headers and other roles are 0.
struct ChatTokens {
  std::vector<std::int64_t> ids;
  std::vector<std::uint8_t> trained;
};

// Reads `{"messages": [{"role", "content"}, ...]}` lines; roles are system | user | assistant
// and every conversation has an assistant turn (errors name FILE:LINE).
std::vector<std::vector<model::ChatMessage>> read_chat_jsonl(const std::filesystem::path& path);

// Renders the conversation with `format` and tokenizes it in segments split at each assistant
// turn's generation point, so the assistant tokens are exactly what the model would generate
// after the rendered prompt. An assistant segment runs from the end of the generation prompt
// (or, when the rendered turn diverges from it, the last whitespace before they differ) to the
// end of the turn's end marker; whitespace after the marker belongs to the next segment. The
// R1-Zero format has no end marker, so `eos` is appended as the turn's last trained token.
ChatTokens tokenize_chat(const model::Tokenizer& tokenizer, model::ChatFormat format,
                         const std::vector<model::ChatMessage>& messages, const std::string& bos,
                         std::int64_t eos);

// Sequences concatenated for one packed forward. Row r of `rows` is the position whose hidden
// state predicts targets[r]; only trained tokens are targets.
struct PackedBatch {
  at::Tensor input_ids;   // [T] int64
  at::Tensor positions;   // [T] int64, restarting at 0 in every sequence
  at::Tensor cu_seqlens;  // [B+1] int64
  at::Tensor rows;        // [N] int64 into [0, T)
  at::Tensor targets;     // [N] int64
  std::int64_t tokens = 0;
};

PackedBatch pack(const std::vector<const ChatTokens*>& sequences);

// Splits `order` (indices into lengths) into consecutive batches of at most `batch_tokens`
// tokens each, in order; a sequence longer than batch_tokens is an error (truncate first).
std::vector<std::vector<std::size_t>> plan_batches(const std::vector<std::int64_t>& lengths,
                                                   const std::vector<std::size_t>& order,
                                                   std::int64_t batch_tokens);

// Summed negative log-likelihood of the batch's targets (divide by targets.numel() for the
// token mean); differentiable.
at::Tensor packed_nll_sum(model::CausalLM& model, const PackedBatch& batch);

}  // namespace ponder::train
