// Math answer checking: extraction of the final answer from a completion (\boxed{}, GSM8K ####,
// <answer>, "the answer is", last number) and equivalence of two answers with an explanation.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace ponder::rewards {

struct Extraction {
  std::string answer;
  std::string method;  // boxed | gsm8k | answer_tag | answer_is | last_number
};

struct ExtractOptions {
  bool last_number_fallback = true;
};

std::optional<Extraction> extract_answer(const std::string& text,
                                         const ExtractOptions& options = {});

struct Verdict {
  bool equivalent = false;
  std::string
      reason;  // e.g. "same normalised text", "numerically equal", "different values 3 vs 4"
  nlohmann::json details;
};

struct EquivalenceOptions {
  double relative_tolerance = 1e-6;
};

// Compares a predicted answer with a gold answer. Never throws on model output and is bounded:
// inputs over 4 KB or nesting deeper than 64 are judged on their normalised text alone.
Verdict answers_equivalent(const std::string& predicted, const std::string& gold,
                           const EquivalenceOptions& options = {});

// Canonical text used for exact comparison (LaTeX noise, units, spacing removed).
std::string normalize_answer(const std::string& answer);

}  // namespace ponder::rewards
