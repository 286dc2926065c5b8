#include "train/eval_metrics.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace ponder::train {

double pass_at_k(std::size_t n, std::size_t c, std::size_t k) {
  if (k == 0 || k > n)
    throw Error("pass@k: k=" + std::to_string(k) + " needs 1 <= k <= n=" + std::to_string(n));
  if (c > n)
    throw Error("pass@k: c=" + std::to_string(c) + " correct exceeds n=" + std::to_string(n));
  if (n - c < k) return 1.0;
  // Product form of C(n-c, k) / C(n, k) avoids huge binomials.
  double all_wrong = 1.0;
  for (std::size_t i = n - c + 1; i <= n; ++i) all_wrong *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - all_wrong;
}

double majority_at_k(const std::vector<Vote>& votes, std::size_t k) {
  if (k == 0 || k > votes.size())
    throw Error("maj@k: k=" + std::to_string(k) +
                " needs 1 <= k <= n=" + std::to_string(votes.size()));
  std::map<std::string, std::size_t> counts;
  std::size_t most = 0;
  for (std::size_t i = 0; i < k; ++i)
    if (votes[i].answer) most = std::max(most, ++counts[*votes[i].answer]);
  for (std::size_t i = 0; i < k; ++i)
    if (votes[i].answer && counts[*votes[i].answer] == most) return votes[i].correct ? 1.0 : 0.0;
  return 0.0;
}

}  // namespace ponder::train
