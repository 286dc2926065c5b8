#include "rewards/code_rewards.h"

#include <algorithm>
#include <functional>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/json_struct.h"
#include "core/log.h"
#include "rewards/code_extract.h"
#include "sandbox/languages.h"
#include "sandbox/sandbox.h"

namespace ponder::rewards {
namespace {

using nlohmann::json;

struct CodeRewardOptions {
  std::string style = "humaneval";
  std::string scoring = "binary";
  std::string language = "python";
  double time_limit_s = 10.0;
  std::int64_t memory_mb = 1024;
  std::int64_t max_output_chars = 2000;
  bool unsafe_no_isolation = false;

  template <class V>
  void fields(V& v) {
    v("style", style, "humaneval | mbpp | stdio");
    v("scoring", scoring, "binary (all tests pass) | fraction (of tests passed)");
    v("language", language, "language of stdio programs (sandbox language table)");
    v("time_limit_s", time_limit_s, "wall and CPU limit of each sandbox run");
    v("memory_mb", memory_mb, "address-space limit of each sandbox run");
    v("max_output_chars", max_output_chars, "program output kept per test in details");
    v("unsafe_no_isolation", unsafe_no_isolation, "debugging only: run without the sandbox");
  }
};

// What to run for the python test styles: setup code, the solution, then each test in turn.
struct PythonTask {
  std::string setup;
  std::string solution;
  std::vector<std::string> tests;
};

std::string field_string(const json& reference, const char* key, bool required = true) {
  if (!reference.is_object() || !reference.contains(key)) {
    if (!required) return "";
    throw Error(std::string("reward 'code': sample reference has no '") + key + "' field");
  }
  if (!reference[key].is_string()) {
    throw Error(std::string("reward 'code': reference field '") + key + "' must be a string");
  }
  return reference[key].get<std::string>();
}

std::vector<std::string> field_strings(const json& reference, const char* key, bool required) {
  std::vector<std::string> values;
  if (!reference.is_object() || !reference.contains(key)) {
    if (required) {
      throw Error(std::string("reward 'code': sample reference has no '") + key + "' list");
    }
    return values;
  }
  json_struct::read(reference[key], values, std::string("reference.") + key);
  return values;
}

PythonTask humaneval_task(const Sample& sample, const std::string& code) {
  const std::string entry_point = field_string(sample.reference, "entry_point");
  std::string prompt = field_string(sample.reference, "prompt", false);
  if (prompt.empty()) prompt = sample.prompt;
  // A full function re-defines the stub after the prompt (keeping the prompt's imports and
  // helpers); anything else continues the prompt's function body.
  const bool full_function = code.find("def " + entry_point + "(") != std::string::npos;
  return {.solution = full_function ? prompt + "\n" + code : prompt + code,
          .tests = {field_string(sample.reference, "test") + "\ncheck(" + entry_point + ")\n"}};
}

struct StdioCase {
  std::string input, output;
};

std::vector<StdioCase> stdio_cases(const json& reference) {
  if (!reference.is_object() || !reference.contains("tests") || !reference["tests"].is_array()) {
    throw Error("reward 'code': stdio reference needs a 'tests' list of {input, output}");
  }
  std::vector<StdioCase> cases;
  for (const json& test : reference["tests"]) {
    cases.push_back({field_string(test, "input"), field_string(test, "output")});
  }
  return cases;
}

PythonTask mbpp_task(const Sample& sample, const std::string& code) {
  std::string setup;
  for (const std::string& line : field_strings(sample.reference, "test_imports", false)) {
    setup += line + "\n";
  }
  setup += field_string(sample.reference, "test_setup_code", false);
  return {.setup = setup,
          .solution = code,
          .tests = field_strings(sample.reference, "test_list", true)};
}

// A JSON string with raw UTF-8 is also a valid Python string literal.
std::string python_literal(const std::string& text) {
  return json(text).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string random_nonce() {
  std::random_device device;
  std::ostringstream out;
  out << "ponder-" << std::hex << device() << device() << device();
  return out.str();
}

// Verdict lines go straight to fd 1 with a per-run nonce, so output printed (or redirected)
// by the solution cannot forge or hide them.
std::string python_harness(const PythonTask& task, const std::string& nonce) {
  std::string tests = "[";
  for (const std::string& test : task.tests) tests += python_literal(test) + ",\n";
  tests += "]";
  return "import os as _ponder_os\n"
         "_ponder_write = _ponder_os.write\n"
         "def _ponder_report(*parts):\n"
         "    _ponder_write(1, ('\\n" +
         nonce +
         " ' + ' '.join(parts) + '\\n').encode())\n"
         "_ponder_globals = {'__name__': '__main__', '__builtins__': __builtins__}\n"
         "try:\n"
         "    exec(compile(" +
         python_literal(task.setup) +
         ", 'setup.py', 'exec'), _ponder_globals)\n"
         "    exec(compile(" +
         python_literal(task.solution) +
         ", 'solution.py', 'exec'), _ponder_globals)\n"
         "except BaseException as _ponder_error:\n"
         "    _ponder_report('load', type(_ponder_error).__name__)\n"
         "    raise\n"
         "for _ponder_index, _ponder_test in enumerate(" +
         tests +
         "):\n"
         "    try:\n"
         "        exec(compile(_ponder_test, f'test_{_ponder_index}.py', 'exec'), "
         "_ponder_globals)\n"
         "        _ponder_report(str(_ponder_index), 'pass')\n"
         "    except BaseException as _ponder_error:\n"
         "        _ponder_report(str(_ponder_index), 'fail', type(_ponder_error).__name__)\n";
}

// Per-test verdicts from the harness output; tests without a verdict line are put down to
// the way the run ended.
std::vector<std::string> parse_verdicts(const sandbox::RunResult& run, const std::string& nonce,
                                        std::size_t tests) {
  std::vector<std::string> verdicts(tests);
  std::istringstream lines(run.stdout_data);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(nonce + " ", 0) != 0) continue;
    std::istringstream words(line.substr(nonce.size() + 1));
    std::string index, outcome, error;
    words >> index >> outcome >> error;
    if (index == "load") {
      for (std::string& v : verdicts) v = "fail: solution raised " + outcome;
      return verdicts;
    }
    std::size_t i = std::strtoul(index.c_str(), nullptr, 10);
    if (i < tests) verdicts[i] = outcome == "pass" ? "pass" : "fail: " + error;
  }
  const char* missing = run.timed_out   ? "timeout"
                        : run.truncated ? "output_limit"
                                        : "no verdict (the program exited early)";
  for (std::string& v : verdicts) {
    if (v.empty()) v = missing;
  }
  return verdicts;
}

// Line-wise comparison ignoring trailing whitespace and trailing blank lines.
std::vector<std::string> normalized_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line.erase(line.find_last_not_of(" \t\r") + 1);
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::string stdio_verdict(const sandbox::RunResult& run, const std::string& expected) {
  if (run.timed_out) return "timeout";
  if (run.truncated) return "output_limit";
  if (run.exit_code != 0) return "runtime_error";
  return normalized_lines(run.stdout_data) == normalized_lines(expected) ? "pass" : "wrong_answer";
}

class CodeReward : public Reward {
 public:
  explicit CodeReward(CodeRewardOptions options)
      : options_(std::move(options)),
        sandbox_({.unsafe_no_isolation = options_.unsafe_no_isolation}),
        limits_{.wall_s = options_.time_limit_s,
                .cpu_s = options_.time_limit_s,
                .memory_mb = options_.memory_mb} {
    if (options_.style != "humaneval" && options_.style != "mbpp" && options_.style != "stdio") {
      throw Error("reward 'code': style '" + options_.style + "' (expected humaneval|mbpp|stdio)");
    }
    if (options_.scoring != "binary" && options_.scoring != "fraction") {
      throw Error("reward 'code': scoring '" + options_.scoring + "' (expected binary|fraction)");
    }
    if (options_.style != "stdio" && sandbox::language(options_.language).name != "python") {
      throw Error("reward 'code': style '" + options_.style + "' runs python only");
    }
  }

  std::string name() const override { return "code"; }

  RewardResult score(const Sample& sample) const override {
    const ExtractedCode code = extract_code(sample.completion, options_.language);
    RewardResult result;
    result.details = {{"style", options_.style}, {"fenced", code.fenced}};
    // Reference data is checked first: a broken dataset throws, a broken program scores 0.
    std::function<std::vector<std::string>()> run;
    if (options_.style == "stdio") {
      run = [&, cases = stdio_cases(sample.reference)] {
        return run_stdio(cases, code.code, result.details);
      };
    } else {
      run = [&, task = options_.style == "humaneval" ? humaneval_task(sample, code.code)
                                                     : mbpp_task(sample, code.code)] {
        return run_python(task, result.details);
      };
    }
    std::vector<std::string> verdicts;
    try {
      verdicts = run();
    } catch (const Error& e) {
      log::warn("reward 'code': sandbox failure scored as 0: {}", e.what());
      result.details["reason"] = std::string("sandbox error: ") + e.what();
      return result;
    }
    std::size_t passed = std::count(verdicts.begin(), verdicts.end(), "pass");
    result.details["passed"] = passed;
    result.details["total"] = verdicts.size();
    if (verdicts.empty()) {
      result.details["reason"] = "the task has no tests";
    } else if (options_.scoring == "fraction") {
      result.value = static_cast<double>(passed) / static_cast<double>(verdicts.size());
    } else {
      result.value = passed == verdicts.size() ? 1.0 : 0.0;
    }
    return result;
  }

 private:
  std::vector<std::string> run_python(const PythonTask& task, json& details) const {
    const std::string nonce = random_nonce();
    sandbox::RunResult run =
        sandbox_.run({.language = "python", .source = python_harness(task, nonce)}, limits_);
    std::vector<std::string> verdicts = parse_verdicts(run, nonce, task.tests.size());
    details["run"] = sandbox::to_json(run, options_.max_output_chars);
    details["tests"] = json::array();
    for (const std::string& verdict : verdicts) details["tests"].push_back({{"verdict", verdict}});
    return verdicts;
  }

  std::vector<std::string> run_stdio(const std::vector<StdioCase>& cases, const std::string& code,
                                     json& details) const {
    details["language"] = sandbox::language(options_.language).name;
    details["tests"] = json::array();
    auto prepared = sandbox_.prepare({.language = options_.language, .source = code});
    if (!prepared.ok) {
      details["compile"] = sandbox::to_json(prepared.compile_failure, options_.max_output_chars);
    }
    std::vector<std::string> verdicts;
    for (const StdioCase& test : cases) {
      const bool stop =
          options_.scoring == "binary" && !verdicts.empty() && verdicts.back() != "pass";
      if (stop || !prepared.ok) {
        verdicts.push_back(prepared.ok ? "skipped" : "compile_error");
        details["tests"].push_back({{"verdict", verdicts.back()}});
        continue;
      }
      sandbox::RunResult run = sandbox_.run_prepared(prepared, test.input, limits_);
      verdicts.push_back(stdio_verdict(run, test.output));
      json entry = sandbox::to_json(run, options_.max_output_chars);
      entry["verdict"] = verdicts.back();
      if (verdicts.back() == "pass") entry.erase("stdout");
      details["tests"].push_back(std::move(entry));
    }
    return verdicts;
  }

  CodeRewardOptions options_;
  sandbox::Sandbox sandbox_;
  sandbox::Limits limits_;
};

}  // namespace

void register_code_rewards(RewardRegistry& registry) {
  registry.add("code", [](const json& options) -> std::unique_ptr<Reward> {
    CodeRewardOptions parsed;
    json_struct::read(options.is_null() ? json::object() : options, parsed, "reward 'code'");
    return std::make_unique<CodeReward>(std::move(parsed));
  });
}

}  // namespace ponder::rewards
