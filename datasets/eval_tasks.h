// Benchmark task definitions for `ponder eval` and the trainer's evaluation: which jsonl file,
// how a record becomes a prompt and a reward reference, and which reward scores it.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "datasets/task.h"

namespace ponder::datasets {

// One benchmark. A JSON task file holds exactly these keys (unknown keys are errors):
//   name, file         the task's name and its jsonl file (relative paths: to the data root for
//                      built-in tasks, to the task file's folder for JSON tasks)
//   prompt             user message; {{field}} is replaced by the record's field (strings as is,
//                      lists one element per line, numbers as JSON)
//   id_field           record field naming the item (default: "line N")
//   answer_field       math tasks: record field holding the gold answer, read per answer_format:
//                      plain (string/number) | gsm8k (text after the last ####) |
//                      boxed (last \boxed{} of the text) | list (list elements joined by ", ")
//   reference_fields   record fields copied as they are into the reference (code tasks)
//   solution_field     record field with a worked solution (optional)
//   reward, reward_options   reward name in the registry and its options
struct EvalTaskSpec {
  std::string name;
  std::string file;
  std::string prompt;
  std::string id_field;
  std::string answer_field;
  std::string answer_format = "plain";
  std::vector<std::string> reference_fields;
  std::string solution_field;
  std::string reward = "math";
  nlohmann::json reward_options = nlohmann::json::object();

  template <class V>
  void fields(V& v) {
    v("name", name, "task name used in metrics and tables");
    v("file", file, "jsonl file, relative to the data root (built-in) or the task file");
    v("prompt", prompt, "user message with {{field}} placeholders");
    v("id_field", id_field, "record field naming the item (default: line number)");
    v("answer_field", answer_field, "record field with the gold answer (math tasks)");
    v("answer_format", answer_format, "plain | gsm8k | boxed | list");
    v("reference_fields", reference_fields, "record fields copied into the reference");
    v("solution_field", solution_field, "record field with a worked solution");
    v("reward", reward, "reward name (math, code, ...)");
    v("reward_options", reward_options, "options passed to the reward");
  }
};

// The shipped tasks: gsm8k, math500, aime24, amc23, minerva_math, olympiadbench, humaneval, mbpp.
const std::vector<EvalTaskSpec>& builtin_eval_tasks();

// A built-in task by name, or a JSON task file when `name_or_path` ends in .json; fails listing
// the built-in names. Relative `file`s are resolved to absolute paths.
EvalTaskSpec find_eval_task(const std::string& name_or_path);
EvalTaskSpec read_eval_task_file(const std::filesystem::path& path);

// Loads the task's items (at most `limit` when given): question = the rendered prompt, reference
// = {"answer": gold} and/or the reference fields. Errors name the file, line and field.
std::vector<Example> load_eval_task(const EvalTaskSpec& spec,
                                    std::optional<std::size_t> limit = std::nullopt);

// Replaces every {{field}} in `text` with the record's field; `where` prefixes errors.
std::string render_template(const std::string& text, const nlohmann::json& record,
                            const std::string& where);

}  // namespace ponder::datasets
