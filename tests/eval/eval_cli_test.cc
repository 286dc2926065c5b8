// `ponder eval` end to end: a tiny random model on every built-in task (templates, extraction,
// sandbox, store, report), and --predictions scored against the datasets' own solutions.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <map>

#include "core/json_file.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder {
namespace {

using nlohmann::json;

const auto ponder_cli = testing_util::run_ponder;

std::map<std::string, double> final_metrics(const std::filesystem::path& run) {
  std::map<std::string, double> out;
  for (const auto& m : store::RunStore(run).metrics()) out[m.name] = m.value;
  return out;
}

// Writes one prediction per item of a dataset file: completion = make(record).
void write_predictions(const std::filesystem::path& out, const std::string& data_file,
                       const std::string& id_field,
                       const std::function<std::string(const json&)>& make) {
  std::ofstream file(out);
  for_each_jsonl(testing_util::data_root() / data_file, [&](const json& r, std::size_t) {
    const std::string id =
        r[id_field].is_string() ? r[id_field].get<std::string>() : r[id_field].dump();
    file << json{{"id", id}, {"completion", make(r)}}.dump() << "\n";
  });
}

TEST(EvalCli, TinyModelOnEveryTask) {
  testing_util::ScratchDir dir("eval_cli_tiny");
  const auto init =
      ponder_cli("init-model --preset tiny-llama --seed 5 --out " + (dir / "m").string() +
                 " --tokenizer " + (testing_util::data_root() / "tokenizers/minimind").string());
  ASSERT_EQ(init.exit_code, 0) << init.output;
  const std::vector<std::string> tasks = {"gsm8k",        "math500",       "aime24",    "amc23",
                                          "minerva_math", "olympiadbench", "humaneval", "mbpp"};
  std::string list;
  for (const auto& t : tasks) list += (list.empty() ? "" : ",") + t;
  const auto r = ponder_cli("eval --model " + (dir / "m").string() + " --task " + list +
                            " --limit 2 --max-tokens 8 --n 2 --kv-blocks 64 --device cpu --out " +
                            (dir / "run").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("mean length"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tokens"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "report.html"));
  const auto metrics = final_metrics(dir / "run");
  store::RunStore store(dir / "run");
  std::map<std::string, int> rows;
  for (const auto& row : store.rollouts()) {
    const std::string task = row.reward_details["task"];
    ++rows[task];
    EXPECT_EQ(row.split, "eval");
    EXPECT_LE(row.tokens, 8);
    const json& details = row.reward_details["details"];
    if (task == "humaneval" || task == "mbpp") {
      EXPECT_NE(row.prompt.find("```python"), std::string::npos);
      EXPECT_TRUE(details.contains("run")) << details.dump();  // the program ran in the sandbox
    } else {
      EXPECT_NE(row.prompt.find("within \\boxed{}"), std::string::npos);
      EXPECT_TRUE(details.contains("gold") && details.contains("reason")) << details.dump();
    }
  }
  for (const auto& t : tasks) {
    EXPECT_EQ(rows[t], 4) << t;  // 2 items x 2 samples
    EXPECT_EQ(metrics.at("eval/" + t + "/items"), 2) << t;
    for (const char* name : {"pass@1", "pass@2", "truncated", "length_tokens"})
      EXPECT_TRUE(metrics.count("eval/" + t + "/" + name)) << t << " " << name;
    EXPECT_NE(r.output.find("\n" + t + " "), std::string::npos) << t;
  }
  EXPECT_TRUE(metrics.count("eval/gsm8k/maj@2"));
  EXPECT_FALSE(metrics.count("eval/mbpp/maj@2"));
}

TEST(EvalCli, HumanEvalCanonicalSolutionsPassAndEmptyOnesFail) {
  testing_util::ScratchDir dir("eval_cli_humaneval");
  write_predictions(dir / "canonical.jsonl", "humaneval/HumanEval.jsonl", "task_id",
                    [](const json& r) { return r["canonical_solution"].get<std::string>(); });
  write_predictions(dir / "empty.jsonl", "humaneval/HumanEval.jsonl", "task_id",
                    [](const json&) { return std::string(); });
  for (const auto& [name, expected] : {std::pair{"canonical", 1.0}, std::pair{"empty", 0.0}}) {
    const auto run = dir / (std::string(name) + "-run");
    const auto r =
        ponder_cli("eval --task humaneval --predictions " +
                   (dir / (std::string(name) + ".jsonl")).string() + " --out " + run.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto metrics = final_metrics(run);
    EXPECT_EQ(metrics.at("eval/humaneval/items"), 164);
    EXPECT_DOUBLE_EQ(metrics.at("eval/humaneval/pass@1"), expected) << name;
  }
}

TEST(EvalCli, Math500ReferenceSolutionsScoreAtLeast998) {
  testing_util::ScratchDir dir("eval_cli_math500");
  write_predictions(dir / "p.jsonl", "math_eval/math500.jsonl", "unique_id",
                    [](const json& r) { return r["solution"].get<std::string>(); });
  const auto r = ponder_cli("eval --task math500 --predictions " + (dir / "p.jsonl").string() +
                            " --out " + (dir / "run").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto metrics = final_metrics(dir / "run");
  EXPECT_EQ(metrics.at("eval/math500/items"), 500);
  EXPECT_GE(metrics.at("eval/math500/pass@1"), 0.998);
  EXPECT_FALSE(metrics.count("eval/math500/length_tokens"));  // no counts, no --model
}

TEST(EvalCli, BadInputFailsWithClearErrors) {
  testing_util::ScratchDir dir("eval_cli_errors");
  const auto unknown = ponder_cli("eval --task gsm9k --predictions x.jsonl");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("ponder: error: unknown task 'gsm9k' (built-in: gsm8k"),
            std::string::npos)
      << unknown.output;
  std::ofstream(dir / "bad_id.jsonl") << R"({"id": "nope", "completion": "x"})"
                                      << "\n";
  const auto bad_id =
      ponder_cli("eval --task aime24 --predictions " + (dir / "bad_id.jsonl").string() + " --out " +
                 (dir / "r1").string());
  EXPECT_EQ(bad_id.exit_code, 1);
  EXPECT_NE(bad_id.output.find("id 'nope' is not an item of task 'aime24'"), std::string::npos)
      << bad_id.output;
  std::ofstream(dir / "typo.jsonl") << R"({"id": "60", "complection": "x"})"
                                    << "\n";
  const auto typo = ponder_cli("eval --task aime24 --predictions " + (dir / "typo.jsonl").string() +
                               " --out " + (dir / "r2").string());
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_NE(typo.output.find("typo.jsonl:1: complection: unknown key; did you mean 'completion'?"),
            std::string::npos)
      << typo.output;
  EXPECT_EQ(ponder_cli("eval --task aime24").exit_code, 1);  // neither --model nor --predictions
}

}  // namespace
}  // namespace ponder
