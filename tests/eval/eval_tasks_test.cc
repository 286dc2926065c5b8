// Built-in eval tasks against a plain-Python reading of the same files (task_oracle.py), and the
// JSON task format's strict checking.
#include "datasets/eval_tasks.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "tests/common/test_util.h"

namespace ponder::datasets {
namespace {

using nlohmann::json;

const json& oracle() {
  static const json tasks = json::parse(testing_util::run_checked(
      testing_util::python() + " " + PONDER_SOURCE_DIR + "/tests/eval/task_oracle.py " +
      testing_util::data_root().string()));
  return tasks;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(EvalTasks, EveryBuiltinTaskMatchesThePythonReading) {
  ASSERT_EQ(builtin_eval_tasks().size(), oracle().size());
  for (const EvalTaskSpec& builtin : builtin_eval_tasks()) {
    SCOPED_TRACE(builtin.name);
    const auto items = load_eval_task(find_eval_task(builtin.name));
    const json& expected = oracle().at(builtin.name);
    ASSERT_EQ(items.size(), expected.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      const json& want = expected[i];
      EXPECT_EQ(items[i].id, want["id"].get<std::string>());
      const std::string question = want["question"];
      if (want.contains("answer")) {
        ASSERT_TRUE(want["answer"].is_string()) << items[i].id;
        EXPECT_EQ(items[i].reference["answer"], want["answer"]) << items[i].id;
        EXPECT_EQ(
            items[i].question,
            question + "\nPlease reason step by step, and put your final answer within \\boxed{}.");
      } else {
        EXPECT_NE(items[i].question.find(question), std::string::npos);
        EXPECT_EQ(items[i].reference, want["reference"]) << items[i].id;
      }
    }
  }
}

TEST(EvalTasks, LimitKeepsTheFirstItems) {
  const auto all = load_eval_task(find_eval_task("aime24"));
  const auto two = load_eval_task(find_eval_task("aime24"), 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].id, all[1].id);
  EXPECT_NE(error_of([] { find_eval_task("gsm9k"); }).find("built-in: gsm8k, math500"),
            std::string::npos);
}

TEST(EvalTasks, TemplatesJoinListsAndNameMissingFields) {
  const json record = {{"q", "Add"}, {"xs", {"a", 2}}, {"n", 7}};
  EXPECT_EQ(render_template("{{q}}: {{xs}} ({{n}}) \\boxed{}", record, "r"),
            "Add: a\n2 (7) \\boxed{}");
  EXPECT_EQ(error_of([&] { render_template("{{missing}}", record, "f.jsonl:3"); }),
            "f.jsonl:3: record has no field 'missing'");
  EXPECT_NE(error_of([&] { render_template("{{q", record, "r"); }).find("unterminated {{"),
            std::string::npos);
}

class TaskFile : public ::testing::Test {
 protected:
  testing_util::ScratchDir dir{"eval_task_file"};
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

TEST_F(TaskFile, LoadsRelativeDataWithTheChosenAnswerFormat) {
  write("items.jsonl",
        "{\"k\": 1, \"text\": \"2+2\", \"sol\": \"so \\\\boxed{4}\"}\n"
        "{\"k\": 2, \"text\": \"3+3\", \"sol\": \"then \\\\boxed{\\\\frac{12}{2}}.\"}\n");
  const auto path = write("t.json", R"({"name": "mine", "file": "items.jsonl",
      "prompt": "Q: {{text}}", "id_field": "k", "answer_field": "sol", "answer_format": "boxed"})");
  const auto items = load_eval_task(find_eval_task(path.string()));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].id, "2");
  EXPECT_EQ(items[1].question, "Q: 3+3");
  EXPECT_EQ(items[1].reference, json({{"answer", "\\frac{12}{2}"}}));
}

TEST_F(TaskFile, StrictChecksNameTheFileAndField) {
  write("items.jsonl", "{\"text\": \"hi\", \"a\": \"no box\"}\n");
  const auto typo = write("typo.json", R"({"name": "x", "file": "items.jsonl",
      "prompt": "{{text}}", "answer_feild": "a"})");
  EXPECT_EQ(error_of([&] { read_eval_task_file(typo); }),
            typo.string() + ": answer_feild: unknown key; did you mean 'answer_field'?");
  const auto no_prompt =
      write("np.json", R"({"name": "x", "file": "items.jsonl", "answer_field": "a"})");
  EXPECT_EQ(error_of([&] { read_eval_task_file(no_prompt); }),
            no_prompt.string() + ": 'prompt' is required");
  const auto format = write("fmt.json", R"({"name": "x", "file": "items.jsonl", "prompt": "p",
      "answer_field": "a", "answer_format": "latex"})");
  EXPECT_NE(error_of([&] { read_eval_task_file(format); }).find("answer_format 'latex'"),
            std::string::npos);
  const auto wrong_type = write("wt.json", R"({"name": "x", "file": "items.jsonl", "prompt": 3})");
  EXPECT_EQ(error_of([&] { read_eval_task_file(wrong_type); }),
            wrong_type.string() + ": prompt: expected a string, got integer 3");
  const auto no_box = write("nb.json", R"({"name": "x", "file": "items.jsonl", "prompt": "{{text}}",
      "answer_field": "a", "answer_format": "boxed"})");
  EXPECT_EQ(error_of([&] { load_eval_task(read_eval_task_file(no_box)); }),
            (dir / "items.jsonl").string() + ":1: a: no \\boxed{} answer in the text");
  const auto field = write("f.json", R"({"name": "x", "file": "items.jsonl", "prompt": "{{txt}}",
      "answer_field": "a"})");
  EXPECT_EQ(error_of([&] { load_eval_task(read_eval_task_file(field)); }),
            (dir / "items.jsonl").string() + ":1: prompt: record has no field 'txt'");
}

}  // namespace
}  // namespace ponder::datasets
