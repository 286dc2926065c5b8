#include "datasets/countdown.h"

#include <algorithm>
#include <optional>
#include <random>
#include <string>

#include "core/error.h"

namespace ponder::datasets {
namespace {

struct Term {
  std::int64_t value;
  std::string text;  // fully parenthesised unless a single number
};

// a op b when the result stays a positive integer (no zero, no fractions, bounded size).
std::optional<Term> combine(const Term& a, const Term& b, char op) {
  std::int64_t v = 0;
  switch (op) {
    case '+':
      v = a.value + b.value;
      break;
    case '-':
      v = a.value - b.value;
      break;
    case '*':
      v = a.value * b.value;
      break;
    default:
      if (b.value == 0 || a.value % b.value != 0) return std::nullopt;
      v = a.value / b.value;
  }
  if (v <= 0 || v > 1000) return std::nullopt;
  return Term{v, "(" + a.text + " " + op + " " + b.text + ")"};
}

// Combines random pairs until one term is left; records each step for the worked solution.
std::optional<std::pair<Term, std::string>> random_solution(std::vector<Term> terms,
                                                            std::mt19937_64& rng) {
  std::string steps;
  while (terms.size() > 1) {
    std::shuffle(terms.begin(), terms.end(), rng);
    const Term b = terms.back();
    terms.pop_back();
    const Term a = terms.back();
    terms.pop_back();
    const auto c = combine(a, b, "+-*/"[rng() % 4]);
    if (!c) return std::nullopt;
    steps += c->text.substr(1, c->text.size() - 2) + " = " + std::to_string(c->value) + ". ";
    terms.push_back(*c);
  }
  return std::pair{terms[0], steps};
}

}  // namespace

std::vector<Example> countdown_examples(std::uint64_t seed, std::size_t count, int numbers,
                                        std::int64_t max_number) {
  if (numbers < 2 || numbers > 6) throw Error("data.numbers: expected 2 to 6 numbers per puzzle");
  std::mt19937_64 rng(seed);
  std::vector<Example> out;
  while (out.size() < count) {
    std::vector<Term> terms;
    nlohmann::json given = nlohmann::json::array();
    std::string listed;
    for (int i = 0; i < numbers; ++i) {
      const auto v = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(max_number)) + 1;
      terms.push_back({v, std::to_string(v)});
      given.push_back(v);
      listed += (listed.empty() ? "" : ", ") + std::to_string(v);
    }
    const auto solution = random_solution(terms, rng);
    if (!solution) continue;
    const auto& [result, steps] = *solution;
    const std::string expression = result.text.substr(1, result.text.size() - 2);
    out.push_back({"countdown-" + std::to_string(seed) + "-" + std::to_string(out.size()),
                   "Using the numbers " + listed + ", make " + std::to_string(result.value) +
                       ". Use + - * / and each number exactly once. Give the expression in "
                       "\\boxed{}.",
                   {{"numbers", given}, {"target", result.value}},
                   "<think>" + steps + "</think> \\boxed{" + expression + "}"});
  }
  return out;
}

}  // namespace ponder::datasets
