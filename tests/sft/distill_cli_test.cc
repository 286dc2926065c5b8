// `ponder distill` trace generation end to end on CPU: a tiny teacher fine-tuned with `ponder sft`
// on one-digit sums samples answers; every kept trace is correct by a hand-computed check (the
// last integer of the answer equals a + b), distinct within its prompt, finished, and carries
// provenance; every rejected sample is wrong or truncated; the file is valid SFT input.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "core/json_file.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"
#include "train/sft_data.h"

namespace ponder {
namespace {

// The hand-computed oracle: "What is a + b?" is answered right when the answer's last integer
// is a + b.
bool correct(const std::string& question, const std::string& answer) {
  std::smatch q;
  if (!std::regex_search(question, q, std::regex(R"((\d+) \+ (\d+))"))) return false;
  const std::regex integer(R"(-?\d+)");
  std::string last;
  for (auto it = std::sregex_iterator(answer.begin(), answer.end(), integer);
       it != std::sregex_iterator(); ++it)
    last = it->str();
  return !last.empty() && std::stoll(last) == std::stoll(q[1]) + std::stoll(q[2]);
}

std::string normalized(const std::string& text) {
  return std::regex_replace(std::regex_replace(text, std::regex(R"(\s+)"), " "),
                            std::regex(R"(^ | $)"), "");
}

void write_inputs(const testing_util::ScratchDir& dir) {
  std::ofstream chats(dir / "chats.jsonl"), prompts(dir / "prompts.jsonl");
  for (int rep = 0; rep < 3; ++rep)
    for (int a = 0; a < 10; ++a)
      for (int b = 0; b < 10; ++b) {
        const std::string q = std::to_string(a) + " + " + std::to_string(b);
        chats << nlohmann::json{{"messages",
                                 {{{"role", "user"}, {"content", "What is " + q + "?"}},
                                  {{"role", "assistant"},
                                   {"content", q + " = " + std::to_string(a + b) + "."}}}}}
                     .dump()
              << "\n";
      }
  for (int i = 0; i < 16; ++i) {
    const int a = (i * 3) % 10, b = (i * 7) % 10;
    prompts << nlohmann::json{{"question",
                               "What is " + std::to_string(a) + " + " + std::to_string(b) + "?"},
                              {"answer", "#### " + std::to_string(a + b)}}
                   .dump()
            << "\n";
  }
}

TEST(DistillCli, KeepsExactlyTheCorrectDistinctTracesWithProvenance) {
  testing_util::ScratchDir dir("distill_cli");
  write_inputs(dir);
  const std::string tokenizer = (testing_util::data_root() / "tokenizers" / "minimind").string();
  const nlohmann::json sft = {
      {"run_dir", (dir / "sft").string()},
      {"epochs", 3},
      {"batch_tokens", 512},
      {"model", {{"preset", "tiny-llama"}, {"tokenizer", tokenizer}}},
      {"data",
       {{"train_file", (dir / "chats.jsonl").string()},
        {"chat_format", "chatml"},
        {"max_seq_len", 64}}},
      {"optim", {{"lr", 3e-3}, {"warmup_steps", 3}, {"schedule", "cosine"}}}};
  std::ofstream(dir / "sft.json") << sft.dump();
  testing_util::run_checked(std::string(PONDER_BINARY) + " sft " + (dir / "sft.json").string() +
                            " 2>&1");
  const auto checkpoints = store::RunStore(dir / "sft").checkpoints();
  ASSERT_FALSE(checkpoints.empty());
  const std::string teacher = checkpoints.back().path;
  const nlohmann::json distill = {
      {"run_dir", (dir / "run").string()},
      {"teacher", {{"path", teacher}}},
      {"data",
       {{"task", "gsm8k"},
        {"train_file", (dir / "prompts.jsonl").string()},
        {"chat_format", "chatml"}}},
      {"sampling", {{"n", 8}, {"temperature", 0.3}, {"max_tokens", 16}, {"prompts_per_batch", 6}}}};
  std::ofstream(dir / "distill.json") << distill.dump();
  const std::string out = testing_util::run_checked(std::string(PONDER_BINARY) + " distill " +
                                                    (dir / "distill.json").string() + " 2>&1");

  std::map<std::string, std::set<std::string>> kept;
  std::int64_t traces = 0;
  for_each_jsonl(dir / "run" / "traces.jsonl", [&](const nlohmann::json& r, std::size_t) {
    const std::string question = r["messages"][0]["content"], answer = r["messages"][1]["content"];
    EXPECT_TRUE(correct(question, answer)) << question << " -> " << answer;
    EXPECT_TRUE(kept[question].insert(normalized(answer)).second) << "duplicate: " << answer;
    EXPECT_EQ(r["provenance"]["teacher"], teacher);
    EXPECT_GE(r["provenance"]["reward"].get<double>(), 1.0);
    ++traces;
  });
  EXPECT_GT(traces, 0) << out;
  std::int64_t samples = 0, duplicates = 0;
  for (const auto& row : store::RunStore(dir / "run").rollouts()) {
    ++samples;
    const std::string verdict = row.reward_details["distill"];
    if (verdict == "rejected") {
      EXPECT_TRUE(!correct(row.prompt, row.completion) || row.finish_reason == "length")
          << row.prompt << " -> " << row.completion;
    } else if (verdict == "duplicate") {
      ++duplicates;
      EXPECT_TRUE(kept[row.prompt].count(normalized(row.completion)));
    } else {
      EXPECT_EQ(verdict, "kept");
      EXPECT_TRUE(kept[row.prompt].count(normalized(row.completion)));
    }
  }
  EXPECT_EQ(samples, 16 * 8);
  EXPECT_GT(duplicates, 0) << "at temperature 0.3 the teacher repeats itself";
  EXPECT_EQ(train::read_chat_jsonl(dir / "run" / "traces.jsonl").size(),
            static_cast<std::size_t>(traces));
}

}  // namespace
}  // namespace ponder
