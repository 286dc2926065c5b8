#include "rewards/builtin.h"

#include "rewards/code_rewards.h"
#include "rewards/countdown_reward.h"
#include "rewards/math_rewards.h"

namespace ponder::rewards {

RewardRegistry& builtin_rewards() {
  static RewardRegistry registry = [] {
    RewardRegistry r;
    register_math_rewards(r);
    register_code_rewards(r);
    register_countdown_reward(r);
    return r;
  }();
  return registry;
}

}  // namespace ponder::rewards
