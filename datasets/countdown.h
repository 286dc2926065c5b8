// Countdown puzzles (TinyZero's RL task): combine the given numbers, each exactly once, with
// + - * / into an expression equal to the target. Every generated puzzle has a known solution.
#pragma once

#include <cstdint>

#include "datasets/task.h"

namespace ponder::datasets {

// `count` puzzles deterministic in `seed`, each with `numbers` operands in 1..max_number whose
// target is a positive integer reached by a random expression over all of them (divisions
// exact). reference = {"numbers": [...], "target": n}; solution = the expression worked step by
// step, ending in \boxed{expression}.
std::vector<Example> countdown_examples(std::uint64_t seed, std::size_t count, int numbers,
                                        std::int64_t max_number = 20);

}  // namespace ponder::datasets
