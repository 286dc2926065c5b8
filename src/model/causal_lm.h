// The contract between models and their users: the trainer's packed forward, the rollout
// engine's paged-cache step, and chunked per-token log-probabilities, for every architecture.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"

namespace ponder::model {

// How the paged KV cache stores its tokens: in the model's dtype (auto), or (MLA only) as FP8
// latent rows of bytes (kernels::mla_cache_quantize: about half the memory of BF16).
enum class KvCacheDtype { kAuto, kFp8 };
// "auto" | "fp8"; anything else throws an Error naming `field`.
KvCacheDtype parse_kv_cache_dtype(const std::string& value, const std::string& field);

// What one layer stores per cached token, so the engine can allocate pages without knowing the
// architecture. MLA: one tensor [kv_lora_rank + qk_rope_head_dim] (latent then RoPE key), or with
// an FP8 cache one uint8 row [kv_lora_rank + kv_lora_rank / 32 + 2 qk_rope_head_dim].
// GQA: two tensors, K and V, each [num_key_value_heads, head_dim].
struct KvLayout {
  std::int64_t num_layers = 0;
  std::vector<std::vector<std::int64_t>> per_token_shapes;
  at::ScalarType dtype = at::kFloat;
};

// Paged cache storage: layers[l][t] is the t-th tensor of layer l with shape
// [num_blocks, block_size, per_token_shapes[t]...]. Owned by the engine, filled by the model.
struct PagedKvCache {
  std::int64_t block_size = 64;
  std::vector<std::vector<at::Tensor>> layers;
};

// One engine step: the new tokens of S sequences flattened into T tokens. A sequence's new tokens
// are contiguous and in order; earlier tokens of that sequence are already in the cache.
struct StepBatch {
  at::Tensor input_ids;     // [T] int64
  at::Tensor positions;     // [T] int64 absolute positions
  at::Tensor slot_mapping;  // [T] int64 block * block_size + offset receiving each token's KV
  at::Tensor query_start;   // [S+1] int64 offsets of each sequence's tokens in the batch
  at::Tensor context_lens;  // [S] int64 cached tokens per sequence after this step (incl. new)
  at::Tensor block_tables;  // [S, max_blocks] int64 pages of each sequence, in order
  // Set by callers that capture the step as a CUDA graph: every sequence decodes one token
  // (query_start = 0..S) and the block tables were checked on the host, so forward_paged makes
  // no host synchronisation and no shape depends on the values.
  bool decode_only = false;
};

// Numerics of the eligible linear layers (attention projections, dense and expert FFNs): as
// stored, BF16 GEMMs, or DeepSeek-V3 FP8 GEMMs. Embedding, output head, router and norms keep
// the model's dtype whatever this says.
enum class LinearPrecision { kNative, kBf16, kFp8 };

// FP8 E4M3 checkpoint weights (with weight_scale_inv): dequantised to the load dtype, or kept as
// FP8 with their scales so the linears run the FP8 path (rollout; not trainable).
enum class Fp8Weights { kDequantise, kKeep };

// The routed MoE experts' GEMMs without gradients: torch's grouped GEMM (CUTLASS on Hopper)
// then the SwiGLU kernel; or a kernels::grouped_gemm kernel with SwiGLU fused, each expert's
// weights read once per 64 of its rows (decode's few rows per expert): kFewRows (cp.async +
// mma.sync) or kWgmma (TMA + wgmma, Hopper only); kWgmmaLarge: TMA + wgmma in 128 x 256 tiles
// (Hopper only), compute-bound from a few hundred rows per expert (prefill, scoring). kAuto (the
// default) picks per call with model::pick_expert_gemm: kWgmma for few rows per expert and
// kWgmmaLarge for more on compute capability 9.0, torch's grouped GEMM otherwise (see
// bench/RESULTS.md, "MoE layer on one GPU").
enum class ExpertGemm { kAuto, kTorchGrouped, kFewRows, kWgmma, kWgmmaLarge };

// How forward_hidden behaves while training.
struct TrainingOptions {
  bool activation_checkpointing = false;  // keep only layer inputs; recompute in the backward
  bool sequence_balance_loss = false;     // collect the MoE sequence-wise balance loss
  // MoE experts with FP8 or BF16 linears as grouped GEMMs (tokens sorted by expert); false: one
  // expert at a time
  bool grouped_experts = true;
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;
  virtual const ModelConfig& config() const = 0;

  // Parameters under their Hugging Face names; the tensors the model computes with (no copies),
  // so the trainer's in-place updates are seen by the engine immediately.
  virtual std::vector<std::pair<std::string, at::Tensor>>& named_parameters() = 0;

  // Packed forward for training/scoring: sequences concatenated, cu_seqlens [B+1] int64,
  // attention causal within each sequence. Returns final-normed hidden states [T, hidden].
  virtual at::Tensor forward_hidden(const at::Tensor& input_ids, const at::Tensor& positions,
                                    const at::Tensor& cu_seqlens) = 0;

  // Engine step: writes the new tokens' KV at slot_mapping, attends over each sequence's pages,
  // returns final-normed hidden states [T, hidden]. Equal to forward_hidden on the same tokens.
  virtual at::Tensor forward_paged(const StepBatch& batch, PagedKvCache& cache) = 0;

  // Throws for an FP8 cache on a model that has none (GQA, kv_lora_rank not a multiple of 128).
  virtual KvLayout kv_layout(KvCacheDtype cache_dtype) const = 0;

  // True when a decode_only forward_paged and logits run on the GPU without host synchronisation
  // (no per-expert loop), so the engine may capture them as CUDA graphs (MLA models today).
  virtual bool graph_capturable() const = 0;

  // FP32 logits [T, vocab] for the given hidden states (use for few rows: sampling).
  virtual at::Tensor logits(const at::Tensor& hidden) = 0;

  // log p(targets[t] | hidden[t]) [T] in FP32, computed over vocab chunks so [T, vocab] FP32 is
  // never materialised; differentiable.
  virtual at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& targets) = 0;

  // DeepSeek-V3 auxiliary-loss-free balancing: each MoE layer's routing bias moves by `rate`
  // against its experts' load (tokens routed to them by the training forwards since the last
  // call; inference is not counted): b_i += rate * sign(mean load - load_i). Returns the loads
  // [moe layers, experts] used; empty for models without a routing bias.
  virtual at::Tensor update_routing_bias(double rate) = 0;
  // The load counters update_routing_bias reads (one [experts] FP64 tensor per MoE layer with a
  // routing bias, shared with the model): data-parallel training sums them over ranks first.
  virtual std::vector<at::Tensor> routing_loads() = 0;

  virtual void set_linear_precision(LinearPrecision precision) = 0;

  virtual void set_training_options(const TrainingOptions& options) = 0;
  // The GEMMs of every MoE layer's routed experts in inference (kAuto by default).
  virtual void set_expert_gemm(ExpertGemm gemm) = 0;

  // Sum over MoE layers of the sequence-wise balance loss of the last forward_hidden with
  // gradients (model::sequence_balance_loss); undefined unless enabled and the model has MoE.
  virtual at::Tensor last_balance_loss() const = 0;
};

// Loads a Hugging Face layout directory (config.json + safetensors).
std::unique_ptr<CausalLM> load_causal_lm(const std::filesystem::path& dir, at::Device device,
                                         at::ScalarType dtype,
                                         Fp8Weights fp8 = Fp8Weights::kDequantise);

}  // namespace ponder::model
