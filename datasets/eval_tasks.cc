#include "datasets/eval_tasks.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "rewards/math_answer.h"

namespace ponder::datasets {
namespace {

using nlohmann::json;

constexpr const char* kMathInstruction =
    "\nPlease reason step by step, and put your final answer within \\boxed{}.";

EvalTaskSpec math_task(std::string name, std::string file, std::string question,
                       std::string id_field, std::string answer_field, std::string answer_format,
                       std::string solution_field) {
  return {.name = std::move(name),
          .file = std::move(file),
          .prompt = "{{" + question + "}}" + kMathInstruction,
          .id_field = std::move(id_field),
          .answer_field = std::move(answer_field),
          .answer_format = std::move(answer_format),
          .solution_field = std::move(solution_field)};
}

std::vector<EvalTaskSpec> make_builtin_tasks() {
  std::vector<EvalTaskSpec> tasks = {
      math_task("gsm8k", "math_eval/gsm8k.jsonl", "question", "idx", "answer", "gsm8k", "answer"),
      math_task("math500", "math_eval/math500.jsonl", "problem", "unique_id", "answer", "plain",
                "solution"),
      math_task("aime24", "math_eval/aime24.jsonl", "problem", "id", "answer", "plain", "solution"),
      math_task("amc23", "math_eval/amc23.jsonl", "problem", "id", "answer", "plain", ""),
      math_task("minerva_math", "math_eval/minerva_math.jsonl", "problem", "idx", "solution",
                "boxed", "solution"),
      math_task("olympiadbench", "math_eval/olympiadbench.jsonl", "question", "id", "final_answer",
                "list", "solution"),
  };
  tasks.push_back(
      {.name = "humaneval",
       .file = "humaneval/HumanEval.jsonl",
       .prompt = "Complete the following Python function. Reply with the complete function in "
                 "one ```python code block.\n\n```python\n{{prompt}}```",
       .id_field = "task_id",
       .reference_fields = {"prompt", "test", "entry_point"},
       .solution_field = "canonical_solution",
       .reward = "code",
       .reward_options = {{"style", "humaneval"}}});
  tasks.push_back({.name = "mbpp",
                   .file = "mbpp/sanitized-mbpp.jsonl",
                   .prompt = "{{prompt}}\nYour code should pass these tests:\n\n{{test_list}}\n\n"
                             "Reply with the Python code in one ```python code block.",
                   .id_field = "task_id",
                   .reference_fields = {"test_list", "test_imports"},
                   .solution_field = "code",
                   .reward = "code",
                   .reward_options = {{"style", "mbpp"}}});
  return tasks;
}

std::string scalar_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// A record field as text: strings as they are, numbers as JSON, lists joined by `separator`.
std::string field_text(const json& record, const std::string& field, const std::string& where,
                       const std::string& separator = "\n") {
  const auto it = record.find(field);
  if (it == record.end() || it->is_null())
    throw Error(where + ": record has no field '" + field + "'");
  if (it->is_object()) throw Error(where + ": field '" + field + "' is an object, expected text");
  if (!it->is_array()) return scalar_text(*it);
  std::string text;
  for (const json& element : *it) text += (text.empty() ? "" : separator) + scalar_text(element);
  return text;
}

std::string gold_answer(const EvalTaskSpec& spec, const json& record, const std::string& where) {
  const std::string at = where + ": " + spec.answer_field;
  if (spec.answer_format == "list") return field_text(record, spec.answer_field, where, ", ");
  const std::string text = field_text(record, spec.answer_field, where);
  if (spec.answer_format == "gsm8k") return gsm8k_final_answer(text, at);
  if (spec.answer_format == "boxed") {
    const auto boxed = rewards::extract_answer(text, {.last_number_fallback = false});
    if (!boxed || boxed->method != "boxed") throw Error(at + ": no \\boxed{} answer in the text");
    return boxed->answer;
  }
  return text;
}

void validate(const EvalTaskSpec& spec, const std::string& where) {
  const auto require = [&](const std::string& value, const char* key) {
    if (value.empty()) throw Error(where + ": '" + key + "' is required");
  };
  require(spec.name, "name");
  require(spec.file, "file");
  require(spec.prompt, "prompt");
  require(spec.reward, "reward");
  const bool name_ok = std::all_of(spec.name.begin(), spec.name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
  if (!name_ok) throw Error(where + ": name '" + spec.name + "' may use only [A-Za-z0-9_.-]");
  const std::vector<std::string> formats = {"plain", "gsm8k", "boxed", "list"};
  if (std::find(formats.begin(), formats.end(), spec.answer_format) == formats.end())
    throw Error(where + ": answer_format '" + spec.answer_format +
                "' (expected plain | gsm8k | boxed | list)");
  if (spec.answer_field.empty() && spec.reference_fields.empty())
    throw Error(where + ": give answer_field and/or reference_fields (what the reward checks)");
  if (!spec.reward_options.is_object()) throw Error(where + ": reward_options: expected an object");
}

}  // namespace

const std::vector<EvalTaskSpec>& builtin_eval_tasks() {
  static const std::vector<EvalTaskSpec> tasks = make_builtin_tasks();
  return tasks;
}

EvalTaskSpec read_eval_task_file(const std::filesystem::path& path) {
  const json document = read_json_file(path);
  EvalTaskSpec spec;
  try {
    json_struct::read(document, spec, "");
  } catch (const Error& e) {
    rethrow_with_context(path.string(), e);
  }
  validate(spec, path.string());
  if (std::filesystem::path(spec.file).is_relative())
    spec.file = (std::filesystem::absolute(path).parent_path() / spec.file).string();
  return spec;
}

EvalTaskSpec find_eval_task(const std::string& name_or_path) {
  if (name_or_path.ends_with(".json")) return read_eval_task_file(name_or_path);
  std::string names;
  for (EvalTaskSpec spec : builtin_eval_tasks()) {
    if (spec.name == name_or_path) {
      if (std::filesystem::path(spec.file).is_relative())
        spec.file = (data_root() / spec.file).string();
      return spec;
    }
    names += (names.empty() ? "" : ", ") + spec.name;
  }
  throw Error("unknown task '" + name_or_path + "' (built-in: " + names +
              "; or a task file ending in .json)");
}

std::string render_template(const std::string& text, const json& record, const std::string& where) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t open; (open = text.find("{{", at)) != std::string::npos;) {
    const std::size_t close = text.find("}}", open + 2);
    if (close == std::string::npos)
      throw Error(where + ": unterminated {{ at offset " + std::to_string(open));
    out += text.substr(at, open - at);
    out += field_text(record, text.substr(open + 2, close - open - 2), where);
    at = close + 2;
  }
  return out + text.substr(at);
}

std::vector<Example> load_eval_task(const EvalTaskSpec& spec, std::optional<std::size_t> limit) {
  validate(spec, "task " + spec.name);
  std::vector<Example> items;
  for_each_jsonl(spec.file, [&](const json& record, std::size_t line) {
    if (limit && items.size() >= *limit) return;
    const std::string where = spec.file + ":" + std::to_string(line);
    if (!record.is_object()) throw Error(where + ": expected a JSON object");
    Example e;
    e.id = spec.id_field.empty() ? "line " + std::to_string(line)
                                 : field_text(record, spec.id_field, where);
    e.question = render_template(spec.prompt, record, where + ": prompt");
    e.reference = json::object();
    if (!spec.answer_field.empty()) e.reference["answer"] = gold_answer(spec, record, where);
    for (const std::string& field : spec.reference_fields) {
      if (!record.contains(field)) throw Error(where + ": record has no field '" + field + "'");
      e.reference[field] = record[field];
    }
    if (!spec.solution_field.empty()) e.solution = field_text(record, spec.solution_field, where);
    items.push_back(std::move(e));
  });
  if (items.empty()) throw Error(spec.file + ": task '" + spec.name + "' has no items");
  return items;
}

}  // namespace ponder::datasets
