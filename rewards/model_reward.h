// The `model` reward: a learned reward model (`ponder rm train`, or any HF
// ...ForSequenceClassification directory) scoring (prompt, completion), one sample or a batch.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "rewards/reward.h"

namespace ponder::model {
class RewardModel;
class Tokenizer;
}  // namespace ponder::model

namespace ponder::rewards {

struct ModelRewardOptions {
  std::string path;                   // reward model directory (with its tokenizer files)
  std::string chat_format;            // empty: from the directory's tokenizer_config.json
  std::string device = "cpu";         // cpu | cuda | cuda:N
  std::int64_t max_tokens = 4096;     // longer samples keep their last max_tokens tokens
  std::int64_t batch_tokens = 16384;  // tokens per packed forward in score_batch
  std::string transform = "none";     // none (raw score) | sigmoid
  template <class V>
  void fields(V& v) {
    v("path", path, "reward model directory (HF ...ForSequenceClassification + tokenizer)");
    v("chat_format", chat_format,
      "prompt format (empty: the one the model was trained with, else from tokenizer_config.json)");
    v("device", device, "cpu | cuda | cuda:N");
    v("max_tokens", max_tokens, "samples longer than this keep their last max_tokens tokens");
    v("batch_tokens", batch_tokens, "tokens per packed forward when scoring a batch");
    v("transform", transform, "none (raw score) | sigmoid (score mapped into (0, 1))");
  }
};

class ModelReward : public Reward {
 public:
  explicit ModelReward(ModelRewardOptions options);
  ~ModelReward() override;
  std::string name() const override { return "model"; }
  // details: {"score": raw score, "tokens": n, "truncated": bool} or {"error": ...} (value 0).
  RewardResult score(const Sample& sample) const override;
  // Same results as score() on each sample, from packed forwards of up to batch_tokens tokens.
  std::vector<RewardResult> score_batch(std::span<const Sample> samples) const;

 private:
  ModelRewardOptions options_;
  model::ChatFormat format_;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::unique_ptr<model::RewardModel> model_;
  mutable std::mutex mutex_;  // one forward at a time on the shared model
};

// Registers "model" (options: ModelRewardOptions as JSON; `path` is required).
void register_model_rewards(RewardRegistry& registry);

}  // namespace ponder::rewards
