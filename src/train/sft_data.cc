#include "train/sft_data.h"

#include <algorithm>

#include "core/error.h"
#include "core/json_file.h"

namespace ponder::train {
namespace {

model::ChatMessage read_message(const nlohmann::json& m, const std::string& where) {
  if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
      !m["content"].is_string())
    throw Error(where + ": expected {\"role\": string, \"content\": string}");
  const std::string role = m["role"].get<std::string>();
  if (role != "system" && role != "user" && role != "assistant")
    throw Error(where + ": role '" + role + "' is not one of system, user, assistant");
  return {role, m["content"].get<std::string>()};
}

// Where the assistant's own tokens start in `full`, given the rendered generation prompt.
std::size_t assistant_start(const std::string& prompt, const std::string& full) {
  if (full.starts_with(prompt)) return prompt.size();
  const std::size_t common = static_cast<std::size_t>(
      std::mismatch(prompt.begin(), prompt.end(), full.begin(), full.end()).first - prompt.begin());
  const std::size_t space = full.find_last_of(" \t\n", common == 0 ? 0 : common - 1);
  return space == std::string::npos ? 0 : space + 1;
}

void append(ChatTokens& out, const std::vector<std::int64_t>& ids, std::uint8_t trained) {
  out.ids.insert(out.ids.end(), ids.begin(), ids.end());
  out.trained.insert(out.trained.end(), ids.size(), trained);
}

}  // namespace

std::vector<std::vector<model::ChatMessage>> read_chat_jsonl(const std::filesystem::path& path) {
  std::vector<std::vector<model::ChatMessage>> chats;
  for_each_jsonl(path, [&](const nlohmann::json& record, std::size_t line) {
    const std::string where = path.string() + ":" + std::to_string(line);
    if (!record.is_object() || !record.contains("messages") || !record["messages"].is_array())
      throw Error(where + ": expected an object with a \"messages\" array");
    std::vector<model::ChatMessage> chat;
    for (const auto& m : record["messages"]) chat.push_back(read_message(m, where));
    if (std::none_of(chat.begin(), chat.end(), [](const auto& m) { return m.role == "assistant"; }))
      throw Error(where + ": the conversation has no assistant message to train on");
    chats.push_back(std::move(chat));
  });
  return chats;
}

ChatTokens tokenize_chat(const model::Tokenizer& tokenizer, model::ChatFormat format,
                         const std::vector<model::ChatMessage>& messages, const std::string& bos,
                         std::int64_t eos) {
  ChatTokens out;
  std::string done;  // rendered text already tokenized
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::vector<model::ChatMessage> before(messages.begin(), messages.begin() + i);
    const std::string prompt = model::render_chat(format, before, true, bos);
    const std::string full = model::render_chat(
        format, {messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i) + 1}, false,
        bos);
    const std::size_t start = std::max(assistant_start(prompt, full), done.size());
    const std::size_t end = full.find_last_not_of(" \t\n") + 1;
    if (!full.starts_with(done) || end <= start)
      throw Error("chat template: turn " + std::to_string(i) +
                  " does not extend the rendering of the turns before it");
    append(out, tokenizer.encode(std::string_view(full).substr(done.size(), start - done.size())),
           0);
    append(out, tokenizer.encode(std::string_view(full).substr(start, end - start)), 1);
    if (format == model::ChatFormat::kR1Zero) append(out, {eos}, 1);
    done = full.substr(0, end);
  }
  return out;
}

PackedBatch pack(const std::vector<const ChatTokens*>& sequences) {
  std::vector<std::int64_t> ids, positions, cu = {0}, rows, targets;
  for (const ChatTokens* s : sequences) {
    const auto base = static_cast<std::int64_t>(ids.size());
    ids.insert(ids.end(), s->ids.begin(), s->ids.end());
    for (std::size_t t = 0; t < s->ids.size(); ++t) {
      positions.push_back(static_cast<std::int64_t>(t));
      if (t == 0 || !s->trained[t]) continue;  // the first token has no context to predict it
      rows.push_back(base + static_cast<std::int64_t>(t) - 1);
      targets.push_back(s->ids[t]);
    }
    cu.push_back(static_cast<std::int64_t>(ids.size()));
  }
  const auto tokens = static_cast<std::int64_t>(ids.size());
  return {at::tensor(ids, at::kLong),  at::tensor(positions, at::kLong), at::tensor(cu, at::kLong),
          at::tensor(rows, at::kLong), at::tensor(targets, at::kLong),   tokens};
}

std::vector<std::vector<std::size_t>> plan_batches(const std::vector<std::int64_t>& lengths,
                                                   const std::vector<std::size_t>& order,
                                                   std::int64_t batch_tokens) {
  std::vector<std::vector<std::size_t>> batches;
  std::int64_t used = batch_tokens;
  for (const std::size_t i : order) {
    if (lengths[i] > batch_tokens)
      throw Error("sequence of " + std::to_string(lengths[i]) + " tokens exceeds the batch of " +
                  std::to_string(batch_tokens) + " tokens");
    if (used + lengths[i] > batch_tokens) {
      batches.emplace_back();
      used = 0;
    }
    batches.back().push_back(i);
    used += lengths[i];
  }
  return batches;
}

at::Tensor packed_nll_sum(model::CausalLM& model, const PackedBatch& batch) {
  const at::Device device = model.named_parameters().front().second.device();
  const at::Tensor hidden = model.forward_hidden(
      batch.input_ids.to(device), batch.positions.to(device), batch.cu_seqlens.to(device));
  const at::Tensor selected = hidden.index_select(0, batch.rows.to(hidden.device()));
  return -model.token_logprobs(selected, batch.targets.to(hidden.device())).sum();
}

}  // namespace ponder::train
