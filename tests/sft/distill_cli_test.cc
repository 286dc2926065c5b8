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

// A tiny-llama teacher fine-tuned with `ponder sft` on one-digit sums; returns its checkpoint.
std::string sft_teacher(const testing_util::ScratchDir& dir) {
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
  return checkpoints.empty() ? "" : checkpoints.back().path;
}

TEST(DistillCli, KeepsExactlyTheCorrectDistinctTracesWithProvenance) {
  testing_util::ScratchDir dir("distill_cli");
  const std::string teacher = sft_teacher(dir);
  ASSERT_FALSE(teacher.empty());
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

// Mean of the first and of the last `count` values of a run's per-step metric.
std::pair<double, double> first_and_last(const std::filesystem::path& run, const std::string& name,
                                         int count) {
  std::vector<double> values;
  for (const auto& m : store::RunStore(run).metrics())
    if (m.name == name) values.push_back(m.value);
  if (static_cast<int>(values.size()) < 2 * count) return {0, 0};
  double first = 0, last = 0;
  for (int i = 0; i < count; ++i) {
    first += values[i] / count;
    last += values[values.size() - 1 - i] / count;
  }
  return {first, last};
}

// Both training modes of `ponder distill` on a tiny teacher, end to end: the logit cache holds
// exactly the teacher's top-k (checked against HF transformers on the cached sequences), a second
// run reuses it without the teacher, forward KL / JSD / on-policy reverse KL fall well below
// their starting values, the report shows teacher and student accuracy, and mismatched or corrupt
// inputs fail with a clear message.
TEST(DistillCli, LogitAndOnPolicyModesMoveTheStudentTowardTheTeacher) {
  testing_util::ScratchDir dir("distill_modes");
  const std::string teacher = sft_teacher(dir);
  ASSERT_FALSE(teacher.empty());
  const nlohmann::json base = {
      {"teacher", {{"path", teacher}}},
      {"student",
       {{"preset", "tiny-llama"},
        {"tokenizer", (testing_util::data_root() / "tokenizers" / "minimind").string()}}},
      {"data",
       {{"task", "gsm8k"},
        {"train_file", (dir / "prompts.jsonl").string()},
        {"eval_file", (dir / "prompts.jsonl").string()},
        {"eval_size", 8},
        {"chat_format", "chatml"}}},
      {"sampling", {{"n", 4}, {"temperature", 1.0}, {"max_tokens", 16}}},
      {"top_k", 16},
      {"train", {{"steps", 30}, {"batch_size", 8}}},
      {"optim", {{"lr", 3e-3}, {"warmup_steps", 3}, {"schedule", "cosine"}}},
      {"eval", {{"n", 1}, {"temperature", 0.0}}}};
  const auto distill = [&](const std::string& name, const nlohmann::json& changes) {
    nlohmann::json recipe = base;
    recipe["run_dir"] = (dir / name).string();
    recipe.merge_patch(changes);
    std::ofstream(dir / (name + ".json")) << recipe.dump();
    return testing_util::run_command(std::string(PONDER_BINARY) + " distill " +
                                     (dir / (name + ".json")).string() + " 2>&1");
  };
  const auto logits = distill("logits", {{"mode", "logits"}, {"cache_dtype", "float32"}});
  ASSERT_EQ(logits.exit_code, 0) << logits.output;
  EXPECT_NE(logits.output.find("teacher logit cache: " +
                               (dir / "logits" / "teacher_topk.bin").string() + " (64 sequences"),
            std::string::npos)
      << logits.output;
  const auto oracle = nlohmann::json::parse(testing_util::run_checked(
      testing_util::python() + " " + LOGIT_CACHE_ORACLE + " " +
      (dir / "logits" / "teacher_topk.bin").string() + " " + teacher + " 6"));
  EXPECT_GT(oracle["checked_positions"].get<int>(), 20);
  EXPECT_EQ(oracle["ids_mismatch"].get<int>(), 0);
  EXPECT_LT(oracle["logprob"].get<double>(), 1e-4);
  EXPECT_LT(oracle["tail"].get<double>(), 1e-5);
  const auto [kl_first, kl_last] = first_and_last(dir / "logits", "distill/loss_nats_per_token", 5);
  EXPECT_LT(kl_last, 0.5 * kl_first) << logits.output;
  const std::string report = read_text_file(dir / "logits" / "report.html");
  for (const char* needle : {"<h2>Summary</h2>", "teacher_accuracy", "student_accuracy"})
    EXPECT_NE(report.find(needle), std::string::npos) << needle;

  const auto reused = distill("jsd", {{"mode", "logits"},
                                      {"divergence", "jsd"},
                                      {"cache", (dir / "logits" / "teacher_topk.bin").string()}});
  ASSERT_EQ(reused.exit_code, 0) << reused.output;
  EXPECT_NE(reused.output.find("64 sequences, "), std::string::npos) << reused.output;
  EXPECT_NE(reused.output.find(", reused)"), std::string::npos) << reused.output;
  const auto [jsd_first, jsd_last] = first_and_last(dir / "jsd", "distill/loss_nats_per_token", 5);
  EXPECT_LT(jsd_last, 0.5 * jsd_first);

  const auto on_policy = distill("on_policy", {{"mode", "on_policy"}, {"sampling", {{"n", 2}}}});
  ASSERT_EQ(on_policy.exit_code, 0) << on_policy.output;
  EXPECT_EQ(store::RunStore(dir / "on_policy").run_info()->recipe["divergence"], "");
  // The states change as the student learns, so its loss is no yardstick; the teacher's log-prob
  // of the student's own tokens is: it rises as the student imitates the teacher.
  const auto [liked_first, liked_last] =
      first_and_last(dir / "on_policy", "on_policy/teacher_logprob", 5);
  EXPECT_GT(liked_last, liked_first + 1.0) << on_policy.output;
  EXPECT_NE(on_policy.output.find("held-out accuracy: teacher "), std::string::npos);

  const auto gpt2 = distill(
      "gpt2",
      {{"mode", "logits"},
       {"student", {{"tokenizer", (testing_util::data_root() / "tokenizers" / "gpt2").string()}}}});
  EXPECT_EQ(gpt2.exit_code, 1);
  EXPECT_NE(gpt2.output.find("ponder: error: "), std::string::npos) << gpt2.output;
  EXPECT_NE(gpt2.output.find("needs one shared tokenizer"), std::string::npos) << gpt2.output;
  std::ofstream(dir / "bad.bin") << "garbage";
  const auto corrupt =
      distill("corrupt", {{"mode", "logits"}, {"cache", (dir / "bad.bin").string()}});
  EXPECT_EQ(corrupt.exit_code, 1);
  EXPECT_NE(corrupt.output.find("ponder: error: " + (dir / "bad.bin").string() +
                                ": not a ponder logit cache"),
            std::string::npos)
      << corrupt.output;
}

}  // namespace
}  // namespace ponder
