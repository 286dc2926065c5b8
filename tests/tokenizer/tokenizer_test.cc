#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/json_file.h"
#include "model/chat_template.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

using testing_util::ScratchDir;

class TokenizerVsHf : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerVsHf, IdsMatchAndDecodeRoundTrips) {
  ScratchDir dir("tok_" + GetParam());
  const auto tok_dir = testing_util::data_root() / "tokenizers" / GetParam();
  testing_util::run_checked(testing_util::python() + " " + TOKENIZER_ORACLE + " encode " +
                            tok_dir.string() + " " + testing_util::data_root().string() + " " +
                            (dir / "oracle.json").string());
  const auto oracle = read_json_file(dir / "oracle.json");
  const Tokenizer tokenizer = Tokenizer::from_directory(tok_dir);
  const auto& texts = oracle["texts"];
  ASSERT_GE(texts.size(), 3000u);
  int mismatches = 0, roundtrip_failures = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i];
    const auto ids = tokenizer.encode(text);
    if (ids != oracle["ids"][i].get<std::vector<std::int64_t>>() && ++mismatches <= 5)
      ADD_FAILURE() << "ids differ for: " << nlohmann::json(text).dump();
    if (tokenizer.decode(ids) != text && ++roundtrip_failures <= 5)
      ADD_FAILURE() << "decode(encode(s)) != s for: " << nlohmann::json(text).dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << texts.size();
  EXPECT_EQ(roundtrip_failures, 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenizerVsHf,
                         ::testing::Values("deepseek-v3", "gpt2", "minimind"));

TEST(StreamingDecoder, NeverEmitsHalfACharacter) {
  const Tokenizer tokenizer =
      Tokenizer::from_file(testing_util::data_root() / "tokenizers/gpt2/tokenizer.json");
  const std::string text = "emoji 😀 and 日本語 done";
  StreamingDecoder stream(tokenizer);
  std::string streamed;
  for (auto id : tokenizer.encode(text)) {
    const std::string piece = stream.push(id);
    // Every emitted piece is valid UTF-8 on its own: no dangling lead or continuation bytes.
    std::size_t i = 0;
    while (i < piece.size()) {
      const auto lead = static_cast<unsigned char>(piece[i]);
      const std::size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
      ASSERT_GE(lead < 0x80 || lead >= 0xC0, true);
      ASSERT_LE(i + n, piece.size()) << "split character";
      i += n;
    }
    streamed += piece;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, text);
}

class ChatVsHf : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatVsHf, RenderingMatchesApplyChatTemplate) {
  ScratchDir dir("chat_" + GetParam());
  const auto tok_dir = testing_util::data_root() / "tokenizers" / GetParam();
  testing_util::run_checked(testing_util::python() + " " + TOKENIZER_ORACLE + " chat " +
                            tok_dir.string() + " " + (dir / "chat.json").string() + " 2>/dev/null");
  const auto oracle = read_json_file(dir / "chat.json");
  const ChatFormat format = detect_chat_format(read_json_file(tok_dir / "tokenizer_config.json"));
  for (std::size_t i = 0; i < oracle["conversations"].size(); ++i) {
    std::vector<ChatMessage> messages;
    for (const auto& m : oracle["conversations"][i]) messages.push_back({m["role"], m["content"]});
    EXPECT_EQ(render_chat(format, messages, true, oracle["bos"]),
              oracle["rendered"][i].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatVsHf, ::testing::Values("deepseek-v3", "minimind"));

TEST(ChatTemplate, Llama3AndR1ZeroMatchHandWrittenStrings) {
  const std::vector<ChatMessage> messages = {{"system", "S"}, {"user", "What is 1+1?"}};
  EXPECT_EQ(render_chat(ChatFormat::kLlama3, messages, true, "<|begin_of_text|>"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 1+1?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const std::string r1 = render_chat(ChatFormat::kR1Zero, messages, true);
  EXPECT_TRUE(r1.starts_with("A conversation between User and Assistant."));
  EXPECT_TRUE(r1.ends_with(" User: What is 1+1? Assistant: <think>"));
}

// SmolLM2's Jinja template: its default system turn opens a conversation that brings none.
TEST(ChatTemplate, SmolLM2AddsItsDefaultSystemTurn) {
  const nlohmann::json config = {
      {"chat_template",
       "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
       "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
       "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
       "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"}};
  ASSERT_EQ(detect_chat_format(config), ChatFormat::kSmolLM2);
  EXPECT_EQ(render_chat(ChatFormat::kSmolLM2, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatFormat::kSmolLM2, {{"system", "S"}, {"user", "Hi"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(parse_chat_format("smollm2"), ChatFormat::kSmolLM2);
}

}  // namespace
}  // namespace ponder::model
