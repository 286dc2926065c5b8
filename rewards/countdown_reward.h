// The `countdown` rule reward: 1 when the completion's final expression uses exactly the puzzle's
// numbers, each once, with + - * / and parentheses, and equals the target exactly; else 0.
#pragma once

#include "rewards/reward.h"

namespace ponder::rewards {

// Reference: {"numbers": [int...], "target": int}. Details say what was extracted and why it
// failed (no expression, other symbols, wrong numbers, wrong value).
void register_countdown_reward(RewardRegistry& registry);

}  // namespace ponder::rewards
