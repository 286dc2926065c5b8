// RewardModel: a Llama/Qwen2/DeepSeek backbone with a scalar score head, in the Hugging Face
// `...ForSequenceClassification` layout (model.*, score.weight [1, hidden], num_labels 1).
#pragma once

#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/chat_template.h"
#include "model/transformer.h"

namespace ponder::model {

class Tokenizer;

class RewardModel {
 public:
  // backbone: every model.* tensor under its HF name; score: [1, hidden].
  RewardModel(ModelConfig config, std::vector<std::pair<std::string, at::Tensor>> backbone,
              at::Tensor score, std::optional<std::int64_t> pad_token_id);

  const ModelConfig& config() const { return config_; }
  std::optional<std::int64_t> pad_token_id() const { return pad_token_id_; }
  void set_pad_token_id(std::optional<std::int64_t> id) { pad_token_id_ = id; }
  // model.* then score.weight: the tensors the model computes with (no copies).
  const std::vector<std::pair<std::string, at::Tensor>>& named_parameters() const {
    return params_;
  }

  // Packed sequences as in CausalLM::forward_hidden -> scores [B] FP32. Each sequence is scored
  // at its last token that is not pad_token_id (position 0 when all are), as HF does.
  at::Tensor scores(const at::Tensor& input_ids, const at::Tensor& positions,
                    const at::Tensor& cu_seqlens);
  // Convenience: packs the sequences and scores them.
  at::Tensor scores(const std::vector<std::vector<std::int64_t>>& sequences);

 private:
  ModelConfig config_;
  std::unique_ptr<TransformerLM> backbone_;
  at::Tensor score_;
  std::optional<std::int64_t> pad_token_id_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
};

// Loads a ...ForSequenceClassification directory, or a causal LM directory whose lm_head is
// dropped and whose score head is drawn from N(0, 0.02^2) with the global torch generator.
std::unique_ptr<RewardModel> load_reward_model(const std::filesystem::path& dir, at::Device device,
                                               at::ScalarType dtype);
// Writes config.json (architectures ...ForSequenceClassification, num_labels 1, pad_token_id)
// and safetensors in HF layout.
void save_reward_model(const RewardModel& model, const std::filesystem::path& dir);

// Written beside a trained reward model: {"chat_format": NAME}, the format its pairs were
// rendered in, so scorers render samples the same way.
inline constexpr const char* kScoringFile = "scoring.json";

// The chat format recorded in DIR/scoring.json, if any.
std::optional<ChatFormat> scoring_chat_format(const std::filesystem::path& dir);

// The tokens a reward model scores for (prompt, response): one user and one assistant turn in
// `format`, whitespace after the turn's end marker dropped so the last token is the marker.
std::vector<std::int64_t> encode_scored_pair(const Tokenizer& tokenizer, ChatFormat format,
                                             const std::string& prompt,
                                             const std::string& response);

}  // namespace ponder::model
