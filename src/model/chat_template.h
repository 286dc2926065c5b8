// Chat prompt formats rendered in C++ (no Jinja): ChatML (Qwen2), Qwen3-style ChatML with think
// blocks (minimind), SmolLM2 (ChatML with a default system turn), DeepSeek-V3, Llama-3, and the
// plain R1-Zero prompt.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::model {

enum class ChatFormat { kChatML, kQwen3, kSmolLM2, kDeepSeekV3, kLlama3, kR1Zero };

struct ChatMessage {
  std::string role;  // system | user | assistant
  std::string content;
};

// chatml, qwen3, smollm2, deepseek_v3, llama3, r1_zero
ChatFormat parse_chat_format(const std::string& name);
// Picks the format whose markers appear in tokenizer_config.json's chat_template.
ChatFormat detect_chat_format(const nlohmann::json& tokenizer_config);

// bos is prepended where the format's template does (DeepSeek-V3, Llama-3).
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos = "");

}  // namespace ponder::model
