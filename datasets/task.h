// Task examples for training and evaluation: a prompt, the reference a reward checks against,
// and (for SFT warm-up) a worked solution; loaders for GSM8K/MATH jsonl and synthetic arithmetic.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::datasets {

struct Example {
  std::string id;
  std::string question;
  nlohmann::json reference;  // {"answer": ...} for math rewards
  std::string solution;      // a worked solution ending in the answer, when known
};

// Multi-digit addition with an exact answer, deterministic in (seed, index); `digits` bounds the
// operands' size. A `worked_fraction` share of the solutions work column by column with carries
// ("7 + 5 = 12, carry 1. 4 + 8 + 1 = 13. 47 + 85 = 132"), the rest state the sum directly:
// imitating both, a small model answers right far more often when it works the columns, which
// is what GRPO has to discover.
std::vector<Example> arithmetic_examples(std::uint64_t seed, std::size_t count, int digits,
                                         double worked_fraction);

// The column-by-column working of a + b (a, b >= 0), ending in "a + b = sum".
std::string worked_addition(std::int64_t a, std::int64_t b);

// GSM8K jsonl (question, answer with "#### n") and MATH jsonl (problem, solution, answer).
std::vector<Example> load_gsm8k(const std::filesystem::path& path);
std::vector<Example> load_math(const std::filesystem::path& path);

// The final answer of a GSM8K solution: the text after its last "####"; `where` prefixes errors.
std::string gsm8k_final_answer(const std::string& solution, const std::string& where);

// PONDER_DATA, else the shared/data folder beside the repository.
std::filesystem::path data_root();

}  // namespace ponder::datasets
