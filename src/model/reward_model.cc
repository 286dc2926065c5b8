#include "model/reward_model.h"

#include <fstream>

#include "core/error.h"
#include "core/json_file.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

namespace ponder::model {
namespace {

std::string classifier_architecture(const std::string& model_type) {
  if (model_type == "deepseek_v2") return "DeepseekV2ForSequenceClassification";
  if (model_type == "deepseek_v3") return "DeepseekV3ForSequenceClassification";
  if (model_type == "qwen2") return "Qwen2ForSequenceClassification";
  return "LlamaForSequenceClassification";
}

// The backbone never computes logits; declaring the embeddings tied lets TransformerLM run
// without an lm_head tensor.
ModelConfig backbone_config(ModelConfig config) {
  config.tie_word_embeddings = true;
  return config;
}

// Index within each packed sequence of its last token that is not `pad` (0 when all are).
at::Tensor last_scored_rows(const at::Tensor& input_ids, const at::Tensor& cu_seqlens,
                            std::optional<std::int64_t> pad) {
  const at::Tensor ids = input_ids.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor cu = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* id = ids.data_ptr<std::int64_t>();
  const std::int64_t* bounds = cu.data_ptr<std::int64_t>();
  std::vector<std::int64_t> rows;
  for (std::int64_t s = 0; s + 1 < cu.numel(); ++s) {
    std::int64_t row = bounds[s + 1] - 1;
    while (pad && row > bounds[s] && id[row] == *pad) --row;
    if (pad && id[row] == *pad) row = bounds[s];
    rows.push_back(row);
  }
  return at::tensor(rows, at::kLong).to(input_ids.device());
}

}  // namespace

RewardModel::RewardModel(ModelConfig config,
                         std::vector<std::pair<std::string, at::Tensor>> backbone, at::Tensor score,
                         std::optional<std::int64_t> pad_token_id)
    : config_(std::move(config)), score_(std::move(score)), pad_token_id_(pad_token_id) {
  if (score_.dim() != 2 || score_.size(0) != 1 || score_.size(1) != config_.hidden_size)
    throw Error("score.weight: expected shape [1, " + std::to_string(config_.hidden_size) +
                "] (num_labels 1)");
  params_ = backbone;
  params_.emplace_back("score.weight", score_);
  backbone_ = std::make_unique<TransformerLM>(backbone_config(config_), std::move(backbone));
}

at::Tensor RewardModel::scores(const at::Tensor& input_ids, const at::Tensor& positions,
                               const at::Tensor& cu_seqlens) {
  const at::Tensor hidden = backbone_->forward_hidden(input_ids, positions, cu_seqlens);
  const at::Tensor last =
      hidden.index_select(0, last_scored_rows(input_ids, cu_seqlens, pad_token_id_));
  return at::linear(last.to(at::kFloat), score_.to(at::kFloat)).squeeze(1);  // [B]
}

at::Tensor RewardModel::scores(const std::vector<std::vector<std::int64_t>>& sequences) {
  std::vector<std::int64_t> ids, positions, cu = {0};
  for (const auto& s : sequences) {
    if (s.empty()) throw Error("reward model: cannot score an empty sequence");
    ids.insert(ids.end(), s.begin(), s.end());
    for (std::size_t t = 0; t < s.size(); ++t) positions.push_back(static_cast<std::int64_t>(t));
    cu.push_back(static_cast<std::int64_t>(ids.size()));
  }
  const at::Device device = score_.device();
  return scores(at::tensor(ids, at::kLong).to(device), at::tensor(positions, at::kLong).to(device),
                at::tensor(cu, at::kLong).to(device));
}

std::unique_ptr<RewardModel> load_reward_model(const std::filesystem::path& dir, at::Device device,
                                               at::ScalarType dtype) {
  const nlohmann::json raw = read_json_file(dir / "config.json");
  ModelConfig config = ModelConfig::from_json(raw, (dir / "config.json").string());
  const Checkpoint checkpoint(dir);
  std::vector<std::pair<std::string, at::Tensor>> backbone;
  for (const auto& name : checkpoint.names()) {
    if (name == "lm_head.weight" || name == "score.weight") continue;
    const bool keep_fp32 = name.ends_with("e_score_correction_bias");
    backbone.emplace_back(name, checkpoint.load(name, keep_fp32 ? at::kFloat : dtype).to(device));
  }
  at::Tensor score = checkpoint.contains("score.weight")
                         ? checkpoint.load("score.weight", dtype)
                         : at::randn({1, config.hidden_size}, at::kFloat).mul_(0.02).to(dtype);
  std::optional<std::int64_t> pad;
  if (raw.contains("pad_token_id") && raw["pad_token_id"].is_number_integer())
    pad = raw["pad_token_id"].get<std::int64_t>();
  try {
    return std::make_unique<RewardModel>(std::move(config), std::move(backbone), score.to(device),
                                         pad);
  } catch (const Error& e) {
    throw Error(dir.string() + ": " + e.what());
  }
}

void save_reward_model(const RewardModel& model, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  nlohmann::json config = model.config().to_json();
  config["architectures"] = {classifier_architecture(model.config().model_type)};
  config["id2label"] = {{"0", "LABEL_0"}};
  config["label2id"] = {{"LABEL_0", 0}};
  config["pad_token_id"] =
      model.pad_token_id() ? nlohmann::json(*model.pad_token_id()) : nlohmann::json(nullptr);
  std::ofstream(dir / "config.json") << config.dump(2) << "\n";
  save_safetensors(dir, model.named_parameters());
}

std::optional<ChatFormat> scoring_chat_format(const std::filesystem::path& dir) {
  if (!std::filesystem::exists(dir / kScoringFile)) return std::nullopt;
  const nlohmann::json j = read_json_file(dir / kScoringFile);
  if (!j.is_object() || !j.contains("chat_format") || !j["chat_format"].is_string())
    throw Error((dir / kScoringFile).string() + ": expected {\"chat_format\": string}");
  return parse_chat_format(j["chat_format"].get<std::string>());
}

std::vector<std::int64_t> encode_scored_pair(const Tokenizer& tokenizer, ChatFormat format,
                                             const std::string& prompt,
                                             const std::string& response) {
  const std::string bos = tokenizer.bos_id() ? tokenizer.id_to_token(*tokenizer.bos_id()) : "";
  std::string text = render_chat(format, {{"user", prompt}, {"assistant", response}}, false, bos);
  text.erase(text.find_last_not_of(" \t\n") + 1);
  return tokenizer.encode(text);
}

}  // namespace ponder::model
