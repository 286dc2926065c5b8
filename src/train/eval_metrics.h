// Benchmark metrics the way reasoning papers report them: unbiased pass@k (the Codex
// estimator), pass@1 averaged over samples, and maj@k / cons@k majority voting over answers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace ponder::train {

// Probability that at least one of k samples drawn without replacement from n samples, c of
// them correct, is correct: 1 - C(n-c, k) / C(n, k). Fails if k > n or c > n.
double pass_at_k(std::size_t n, std::size_t c, std::size_t k);

// One sample's verdict for majority voting: its normalised answer (nullopt when none could be
// extracted) and whether that answer is correct.
struct Vote {
  std::optional<std::string> answer;
  bool correct = false;
};

// maj@k over the first k votes: the most frequent extracted answer wins; ties go to the answer
// seen first, as in the usual implementations; no extracted answer at all scores 0.
double majority_at_k(const std::vector<Vote>& votes, std::size_t k);

}  // namespace ponder::train
