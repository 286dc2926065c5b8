#include "model/chat_template.h"

#include "core/error.h"

namespace ponder::model {
namespace {

constexpr const char* kR1ZeroPreamble =
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> "
    "answer here </answer>.";

std::string strip(const std::string& s, const char* chars) {
  const auto begin = s.find_first_not_of(chars);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(chars) - begin + 1);
}

std::string chatml(const std::vector<ChatMessage>& messages, bool generation, bool think) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "assistant" && think) {
      std::string reasoning, content = m.content;
      if (const auto end = content.find("</think>"); end != std::string::npos) {
        reasoning = content.substr(0, end);
        if (const auto start = reasoning.rfind("<think>"); start != std::string::npos)
          reasoning = reasoning.substr(start + 7);
        content = content.substr(end + 8);
      }
      out += "<|im_start|>assistant\n<think>\n" + strip(reasoning, "\n") + "\n</think>\n\n" +
             content.substr(std::min(content.size(), content.find_first_not_of('\n'))) +
             "<|im_end|>\n";
      continue;
    }
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (generation)
    out += think ? "<|im_start|>assistant\n<think>\n\n</think>\n\n" : "<|im_start|>assistant\n";
  return out;
}

constexpr const char* kSmolLM2System =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// SmolLM2's template opens with its default system turn when the conversation brings none.
std::string smollm2(const std::vector<ChatMessage>& messages, bool generation) {
  if (messages.empty() || messages.front().role == "system")
    return chatml(messages, generation, false);
  std::vector<ChatMessage> with_system = {{"system", kSmolLM2System}};
  with_system.insert(with_system.end(), messages.begin(), messages.end());
  return chatml(with_system, generation, false);
}

std::string deepseek_v3(const std::vector<ChatMessage>& messages, bool generation,
                        const std::string& bos) {
  std::string system, turns;
  for (const auto& m : messages) {
    if (m.role == "system")
      system += (system.empty() ? "" : "\n\n") + m.content;
    else if (m.role == "user")
      turns += "<\xEF\xBD\x9CUser\xEF\xBD\x9C>" + m.content;
    else
      turns +=
          "<\xEF\xBD\x9C"
          "Assistant\xEF\xBD\x9C>" +
          m.content +
          "<\xEF\xBD\x9C"
          "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
  }
  return bos + system + turns +
         (generation ? "<\xEF\xBD\x9C"
                       "Assistant\xEF\xBD\x9C>"
                     : "");
}

std::string llama3(const std::vector<ChatMessage>& messages, bool generation,
                   const std::string& bos) {
  std::string out = bos;
  for (const auto& m : messages)
    out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content, " \t\n") +
           "<|eot_id|>";
  if (generation) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string r1_zero(const std::vector<ChatMessage>& messages, bool generation) {
  std::string out = kR1ZeroPreamble;
  for (const auto& m : messages) {
    if (m.role == "system") continue;
    out += (m.role == "user" ? " User: " : " Assistant: ") + m.content;
  }
  return out + (generation ? " Assistant: <think>" : "");
}

}  // namespace

ChatFormat parse_chat_format(const std::string& name) {
  if (name == "chatml") return ChatFormat::kChatML;
  if (name == "qwen3") return ChatFormat::kQwen3;
  if (name == "smollm2") return ChatFormat::kSmolLM2;
  if (name == "deepseek_v3") return ChatFormat::kDeepSeekV3;
  if (name == "llama3") return ChatFormat::kLlama3;
  if (name == "r1_zero") return ChatFormat::kR1Zero;
  throw Error("chat format '" + name +
              "' is unknown (chatml, qwen3, smollm2, deepseek_v3, llama3, r1_zero)");
}

ChatFormat detect_chat_format(const nlohmann::json& config) {
  const std::string t = config.value("chat_template", std::string());
  if (t.find("\xEF\xBD\x9CUser\xEF\xBD\x9C") != std::string::npos) return ChatFormat::kDeepSeekV3;
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFormat::kLlama3;
  if (t.find("<|im_start|>") != std::string::npos && t.find("named SmolLM") != std::string::npos)
    return ChatFormat::kSmolLM2;
  if (t.find("<|im_start|>") != std::string::npos)
    return t.find("<think>") != std::string::npos ? ChatFormat::kQwen3 : ChatFormat::kChatML;
  return ChatFormat::kR1Zero;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                        bool generation, const std::string& bos) {
  switch (format) {
    case ChatFormat::kChatML:
      return chatml(messages, generation, false);
    case ChatFormat::kQwen3:
      return chatml(messages, generation, true);
    case ChatFormat::kSmolLM2:
      return smollm2(messages, generation);
    case ChatFormat::kDeepSeekV3:
      return deepseek_v3(messages, generation, bos);
    case ChatFormat::kLlama3:
      return llama3(messages, generation, bos);
    case ChatFormat::kR1Zero:
      return r1_zero(messages, generation);
  }
  return "";
}

}  // namespace ponder::model
