#include "rewards/model_reward.h"

#include <c10/core/GradMode.h>

#include "core/error.h"
#include "core/json_file.h"
#include "core/json_struct.h"
#include "model/reward_model.h"
#include "model/tokenizer.h"

namespace ponder::rewards {
namespace {

model::ChatFormat format_of(const ModelRewardOptions& o) {
  if (!o.chat_format.empty()) return model::parse_chat_format(o.chat_format);
  if (const auto trained = model::scoring_chat_format(o.path)) return *trained;
  const auto config = std::filesystem::path(o.path) / "tokenizer_config.json";
  if (!std::filesystem::exists(config))
    throw Error("reward 'model': " + config.string() + " is missing; set options.chat_format");
  return model::detect_chat_format(read_json_file(config));
}

struct Encoded {
  std::vector<std::int64_t> ids;
  bool truncated = false;
};

}  // namespace

ModelReward::ModelReward(ModelRewardOptions options) : options_(std::move(options)) {
  if (options_.path.empty()) throw Error("reward 'model': options.path is required");
  if (options_.max_tokens <= 0 || options_.batch_tokens < options_.max_tokens)
    throw Error("reward 'model': expected 0 < max_tokens <= batch_tokens");
  if (options_.transform != "none" && options_.transform != "sigmoid")
    throw Error("reward 'model': transform must be none or sigmoid, got '" + options_.transform +
                "'");
  format_ = format_of(options_);
  tokenizer_ = std::make_unique<model::Tokenizer>(model::Tokenizer::from_directory(options_.path));
  model_ = model::load_reward_model(options_.path, at::Device(options_.device), at::kFloat);
}

ModelReward::~ModelReward() = default;

RewardResult ModelReward::score(const Sample& sample) const {
  return score_batch(std::span<const Sample>(&sample, 1)).front();
}

std::vector<RewardResult> ModelReward::score_batch(std::span<const Sample> samples) const {
  std::vector<Encoded> encoded;
  for (const Sample& s : samples) {
    Encoded e{model::encode_scored_pair(*tokenizer_, format_, s.prompt, s.completion)};
    if (static_cast<std::int64_t>(e.ids.size()) > options_.max_tokens) {
      e.ids.erase(e.ids.begin(), e.ids.end() - options_.max_tokens);
      e.truncated = true;
    }
    encoded.push_back(std::move(e));
  }
  std::vector<RewardResult> results(samples.size());
  std::lock_guard<std::mutex> lock(mutex_);
  c10::NoGradGuard no_grad;
  for (std::size_t start = 0; start < encoded.size();) {
    std::vector<std::vector<std::int64_t>> batch;
    std::int64_t tokens = 0;
    std::size_t end = start;
    for (; end < encoded.size(); ++end) {
      const auto n = static_cast<std::int64_t>(encoded[end].ids.size());
      if (!batch.empty() && tokens + n > options_.batch_tokens) break;
      batch.push_back(encoded[end].ids);
      tokens += n;
    }
    try {
      const at::Tensor raw = model_->scores(batch).to(at::kCPU, at::kDouble);
      for (std::size_t i = start; i < end; ++i) {
        const double score = raw[static_cast<std::int64_t>(i - start)].item<double>();
        results[i] = {options_.transform == "sigmoid" ? 1 / (1 + std::exp(-score)) : score,
                      {{"score", score},
                       {"tokens", encoded[i].ids.size()},
                       {"truncated", encoded[i].truncated}}};
      }
    } catch (const std::exception& e) {
      for (std::size_t i = start; i < end; ++i)
        results[i] = {0.0, {{"error", std::string("reward model failed: ") + e.what()}}};
    }
    start = end;
  }
  return results;
}

void register_model_rewards(RewardRegistry& registry) {
  registry.add("model", [](const nlohmann::json& options) -> std::unique_ptr<Reward> {
    ModelRewardOptions parsed;
    json_struct::read(options.is_null() ? nlohmann::json::object() : options, parsed,
                      "reward 'model'");
    return std::make_unique<ModelReward>(std::move(parsed));
  });
}

}  // namespace ponder::rewards
