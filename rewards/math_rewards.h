// Rule rewards for reasoning RL: `math` (final answer vs gold), `format` (R1 think/answer tags)
// and `overlong` (DAPO soft length punishment); registered by register_math_rewards().
#pragma once

#include "rewards/reward.h"

namespace ponder::rewards {

void register_math_rewards(RewardRegistry& registry);

}  // namespace ponder::rewards
