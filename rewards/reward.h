// The Reward interface and registry: every rule, code and model reward scores one Sample and
// explains its verdict in a JSON details object; recipes compose rewards by name with weights.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ponder::rewards {

// One model output to be scored. `reference` holds the task's gold data (answer, tests, ...)
// as given by the dataset; `metadata` carries extras such as the finish reason and lengths.
struct Sample {
  std::string prompt;
  std::string completion;
  nlohmann::json reference;
  nlohmann::json metadata = nlohmann::json::object();
};

struct RewardResult {
  double value = 0.0;
  nlohmann::json details = nlohmann::json::object();
};

// Implementations are pure and thread-safe, and never throw on model output: garbage scores 0
// with the reason in details. They may throw ponder::Error on bad configuration.
class Reward {
 public:
  virtual ~Reward() = default;
  virtual std::string name() const = 0;
  virtual RewardResult score(const Sample& sample) const = 0;
};

using RewardFactory = std::function<std::unique_ptr<Reward>(const nlohmann::json& options)>;

// Registry of reward names -> factories. Each reward family exposes a register_*_rewards()
// function; builtin.h registers them all explicitly. create() fails listing the known names.
class RewardRegistry {
 public:
  void add(const std::string& name, RewardFactory factory);
  std::unique_ptr<Reward> create(const std::string& name, const nlohmann::json& options) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, RewardFactory> factories_;
};

}  // namespace ponder::rewards
