#include "datasets/task.h"

#include <cstdlib>
#include <random>

#include "core/error.h"
#include "core/json_file.h"

namespace ponder::datasets {

std::string worked_addition(std::int64_t a, std::int64_t b) {
  std::string text;
  std::int64_t carry = 0;
  for (std::int64_t x = a, y = b; x > 0 || y > 0 || text.empty(); x /= 10, y /= 10) {
    const std::int64_t column = x % 10 + y % 10 + carry;
    text += std::to_string(x % 10) + " + " + std::to_string(y % 10) + (carry ? " + 1" : "") +
            " = " + std::to_string(column);
    carry = column / 10;
    text += carry && (x >= 10 || y >= 10) ? ", carry 1. " : ". ";
  }
  return text + std::to_string(a) + " + " + std::to_string(b) + " = " + std::to_string(a + b);
}

std::vector<Example> arithmetic_examples(std::uint64_t seed, std::size_t count, int digits,
                                         double worked_fraction) {
  if (digits < 1 || digits > 9) throw Error("data.digits: expected 1 to 9 operand digits");
  std::mt19937_64 rng(seed);
  std::int64_t limit = 1;
  for (int d = 0; d < digits; ++d) limit *= 10;
  std::vector<Example> out;
  for (std::size_t i = 0; i < count; ++i) {
    const auto a = static_cast<std::int64_t>(rng() % limit),
               b = static_cast<std::int64_t>(rng() % limit);
    const bool worked = static_cast<double>(rng() >> 11) * 0x1.0p-53 < worked_fraction;
    const std::string sum = std::to_string(a + b);
    const std::string expr = std::to_string(a) + " + " + std::to_string(b);
    out.push_back({"arith-" + std::to_string(seed) + "-" + std::to_string(i),
                   "What is " + expr + "?",
                   {{"answer", sum}},
                   "<think>" + (worked ? worked_addition(a, b) : expr + " = " + sum) +
                       "</think> \\boxed{" + sum + "}"});
  }
  return out;
}

std::vector<Example> load_gsm8k(const std::filesystem::path& path) {
  std::vector<Example> out;
  for_each_jsonl(path, [&](const nlohmann::json& r, std::size_t line) {
    const std::string where = path.string() + ":" + std::to_string(line);
    if (!r.contains("question") || !r.contains("answer"))
      throw Error(where + ": expected fields question and answer");
    const std::string answer = r["answer"];
    out.push_back({"gsm8k-" + std::to_string(line),
                   r["question"],
                   {{"answer", gsm8k_final_answer(answer, where + ": answer")}},
                   answer});
  });
  return out;
}

std::vector<Example> load_math(const std::filesystem::path& path) {
  std::vector<Example> out;
  for_each_jsonl(path, [&](const nlohmann::json& r, std::size_t line) {
    if (!r.contains("problem") || !r.contains("answer"))
      throw Error(path.string() + ":" + std::to_string(line) +
                  ": expected fields problem and answer");
    out.push_back({r.value("unique_id", "math-" + std::to_string(line)),
                   r["problem"],
                   {{"answer", r["answer"]}},
                   r.value("solution", "")});
  });
  return out;
}

std::string gsm8k_final_answer(const std::string& solution, const std::string& where) {
  const auto mark = solution.rfind("####");
  if (mark == std::string::npos) throw Error(where + ": no '#### n' final answer");
  return solution.substr(mark + 4);
}

std::filesystem::path data_root() {
  if (const char* env = std::getenv("PONDER_DATA"); env && *env) return env;
  return std::filesystem::path(PONDER_SOURCE_ROOT) / ".." / "shared" / "data";
}

}  // namespace ponder::datasets
