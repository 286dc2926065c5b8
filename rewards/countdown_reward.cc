#include "rewards/countdown_reward.h"

#include <algorithm>
#include <cctype>

#include "rewards/math_answer.h"
#include "rewards/math_expression.h"

namespace ponder::rewards {
namespace {

// "3 × (5 - 2) = 9" -> "3 * (5 - 2)": unicode operators mapped, a trailing "= value" dropped.
std::string expression_part(std::string text) {
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"×", "*"},
                                 {"÷", "/"},
                                 {"\\times", "*"},
                                 {"\\div", "/"},
                                 {"\\cdot", "*"},
                                 {"−", "-"},
                                 {"\\left(", "("},
                                 {"\\right)", ")"}}) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at))
      text.replace(at, from.size(), to);
  }
  if (const auto eq = text.find('='); eq != std::string::npos) text.resize(eq);
  return text;
}

std::vector<std::int64_t> literals(const std::string& text) {
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i < text.size();) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    const auto end = text.find_first_not_of("0123456789", i);
    const std::string digits = text.substr(i, end - i);
    out.push_back(digits.size() > 12 ? -1 : std::stoll(digits));
    i = end == std::string::npos ? text.size() : end;
  }
  return out;
}

class CountdownReward : public Reward {
 public:
  std::string name() const override { return "countdown"; }
  RewardResult score(const Sample& sample) const override {
    RewardResult r;
    const auto& ref = sample.reference;
    if (!ref.is_object() || !ref.contains("numbers") || !ref.contains("target") ||
        !ref["numbers"].is_array() || !ref["target"].is_number_integer()) {
      r.details["reason"] = "reference needs numbers (list) and target (integer)";
      return r;
    }
    auto numbers = ref["numbers"].get<std::vector<std::int64_t>>();
    const auto target = ref["target"].get<std::int64_t>();
    const auto extracted = extract_answer(sample.completion, {.last_number_fallback = false});
    if (!extracted) {
      r.details["reason"] = "no final expression (\\boxed{}, <answer> or 'the answer is')";
      return r;
    }
    const std::string expression = expression_part(extracted->answer);
    r.details["extracted"] = expression;
    if (expression.find_first_not_of("0123456789+-*/() \t") != std::string::npos) {
      r.details["reason"] = "only numbers, + - * / and parentheses are allowed";
      return r;
    }
    auto used = literals(expression);
    std::sort(used.begin(), used.end());
    std::sort(numbers.begin(), numbers.end());
    if (used != numbers) {
      r.details["reason"] = "must use each given number exactly once";
      r.details["used"] = used;
      return r;
    }
    const auto parsed = MathExpression::parse(expression);
    const auto value = parsed ? parsed->exact() : std::nullopt;
    if (!value) {
      r.details["reason"] = "not a valid arithmetic expression";
      return r;
    }
    r.details["value"] =
        value->den == 1
            ? std::to_string(static_cast<std::int64_t>(value->num))
            : std::to_string(static_cast<double>(value->num) / static_cast<double>(value->den));
    const bool hit = *value == Rational{target, 1};
    r.value = hit ? 1.0 : 0.0;
    r.details["reason"] = hit ? "equals the target" : "does not equal the target";
    return r;
  }
};

}  // namespace

void register_countdown_reward(RewardRegistry& registry) {
  registry.add("countdown",
               [](const nlohmann::json&) { return std::make_unique<CountdownReward>(); });
}

}  // namespace ponder::rewards
