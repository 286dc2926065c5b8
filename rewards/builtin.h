// Every reward family ponder ships, registered explicitly (no static-initialisation tricks), so
// recipes and `ponder reward eval` can create rewards by name.
#pragma once

#include "rewards/reward.h"

namespace ponder::rewards {

RewardRegistry& builtin_rewards();

}  // namespace ponder::rewards
