// Prompts for the rollout benchmarks: deterministic pseudo-random token ids, one length per
// workload so no side needs padding.
#pragma once

#include <cstdint>
#include <vector>

namespace ponder::bench {

using Ids = std::vector<std::vector<std::int64_t>>;

// `batch` prompts of `length` ids in [3, vocab).
inline Ids make_prompts(std::int64_t batch, std::int64_t length, std::int64_t vocab,
                        std::uint64_t seed) {
  Ids prompts(static_cast<std::size_t>(batch), std::vector<std::int64_t>(length));
  for (auto& p : prompts)
    for (auto& id : p) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      id = 3 + static_cast<std::int64_t>((seed >> 33) % static_cast<std::uint64_t>(vocab - 3));
    }
  return prompts;
}

}  // namespace ponder::bench
