#include "rewards/reward.h"

#include "core/error.h"

namespace ponder::rewards {

void RewardRegistry::add(const std::string& name, RewardFactory factory) {
  factories_[name] = std::move(factory);
}

std::unique_ptr<Reward> RewardRegistry::create(const std::string& name,
                                               const nlohmann::json& options) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [key, _] : factories_) known += (known.empty() ? "" : ", ") + key;
    throw Error("reward '" + name + "': unknown reward; known rewards: " + known);
  }
  return it->second(options);
}

std::vector<std::string> RewardRegistry::names() const {
  std::vector<std::string> result;
  for (const auto& [key, _] : factories_) result.push_back(key);
  return result;
}

}  // namespace ponder::rewards
