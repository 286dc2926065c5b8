// TransformerLM: the one decoder-only implementation behind CausalLM for DeepSeek-V2/V3 (MLA,
// DeepSeekMoE) and Llama/Qwen2 (GQA, SwiGLU); layers are chosen from the ModelConfig.
#pragma once

#include <map>
#include <variant>

#include "model/attention.h"
#include "model/causal_lm.h"

namespace ponder::model {

class TransformerLM : public CausalLM {
 public:
  // params: every tensor under its HF name (already on the target device and dtype).
  TransformerLM(ModelConfig config, std::vector<std::pair<std::string, at::Tensor>> params);

  const ModelConfig& config() const override { return config_; }
  std::vector<std::pair<std::string, at::Tensor>>& named_parameters() override { return params_; }
  at::Tensor forward_hidden(const at::Tensor& input_ids, const at::Tensor& positions,
                            const at::Tensor& cu_seqlens) override;
  at::Tensor forward_paged(const StepBatch& batch, PagedKvCache& cache) override;
  KvLayout kv_layout(KvCacheDtype cache_dtype) const override;
  bool graph_capturable() const override;
  at::Tensor logits(const at::Tensor& hidden) override;
  at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& targets) override;
  at::Tensor update_routing_bias(double rate) override;
  std::vector<at::Tensor> routing_loads() override;
  void set_linear_precision(LinearPrecision precision) override;
  void set_training_options(const TrainingOptions& options) override;
  void set_expert_gemm(ExpertGemm gemm) override;
  at::Tensor last_balance_loss() const override { return balance_loss_; }

 private:
  struct Layer {
    at::Tensor input_norm, post_attention_norm;
    std::variant<GqaAttention, MlaAttention> attention;
    std::variant<Mlp, Moe> ffn;
  };
  // The residual stream and its normed copy between layers, plus the layer's balance loss.
  struct Stream {
    at::Tensor x, normed, balance_loss;
  };
  template <class AttentionCall>
  Stream layer_forward(std::size_t l, const Stream& in, AttentionCall&& call,
                       const at::Tensor& cu_seqlens);
  template <class AttentionCall>
  at::Tensor run_layers(const at::Tensor& input_ids, const at::Tensor& positions,
                        const PackedSequences& packed, AttentionCall&& call);

  ModelConfig config_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
  std::map<std::string, at::Tensor> by_name_;
  Rotary rotary_;
  at::Tensor embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  TrainingOptions training_;
  at::Tensor balance_loss_;
};

// Writes config.json + safetensors in HF layout (the trainer's checkpoints use it).
void save_causal_lm(CausalLM& model, const std::filesystem::path& dir);

}  // namespace ponder::model
