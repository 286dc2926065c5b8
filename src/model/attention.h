// The two attention families: GQA (Llama, Qwen2) with an ordinary K/V cache, and DeepSeek's MLA
// whose cache holds only the compressed latent and the shared RoPE key.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "model/causal_lm.h"
#include "model/layers.h"
#include "model/packed_attention.h"

namespace ponder::model {

// The paged MLA decode attention paths this process has taken so far, in the order first taken,
// as logged but without the device: e.g. "CUDA kernel (kernels::mla_decode_cuda) (BFloat16
// query, BFloat16 cache pages of 64 tokens)". Empty before the first MLA decode step.
std::vector<std::string> decode_attention_paths();

// Per-step inputs shared by every layer's paged attention. Sequences that decode one token run
// as one padded batch (per-sequence ATen calls dominate CPU decode); prefill chunks that start
// their sequence attend among themselves as packed sequences (one batched attention, no cache
// reads); prefill chunks after cached tokens run one by one over their pages.
struct PagedStep {
  const StepBatch* batch;
  std::vector<std::int64_t> query_start;  // host copies of the batch's index tensors
  std::vector<std::int64_t> context_lens;
  std::vector<std::size_t> prefill;  // more than one new token after cached ones
  PackedSequences fresh;             // chunks of more than one token from position 0
  at::Tensor fresh_rows;             // [fresh.tokens] their rows; undefined when consecutive
  std::int64_t fresh_first = 0;      // their first row when consecutive
  at::Tensor decode_rows;            // [D] rows of the step's tokens that decode one token
  at::Tensor decode_tables;          // [D, max_blocks] their block tables
  at::Tensor decode_valid;           // [D, decode_context] key position < context length
  at::Tensor decode_lens;            // [D] their context lengths
  std::int64_t decode_context = 0;   // longest decoding context

  // Host copies of the index tensors (one synchronisation), or none for a decode_only batch
  // (its decode_context is then the block tables' capacity).
  static PagedStep from(const StepBatch& batch, std::int64_t block_size);
  // The fresh chunks' rows of t [T, ...], and writing their results back into out [T, ...].
  at::Tensor fresh_of(const at::Tensor& t) const;
  void put_fresh(at::Tensor& out, const at::Tensor& rows) const;
};

class GqaAttention {
 public:
  GqaAttention(const ModelConfig& c, const ParamLookup& get, const OptionalParamLookup& find,
               const std::string& prefix);
  at::Tensor packed(const at::Tensor& x, const RotaryTables& rot,
                    const PackedSequences& packed) const;
  at::Tensor paged(const at::Tensor& x, const RotaryTables& rot, const PagedStep& step,
                   std::vector<at::Tensor>& cache) const;
  static std::vector<std::vector<std::int64_t>> cache_shapes(const ModelConfig& c);
  void for_each_linear(const LinearVisitor& visit);

 private:
  Linear q_, k_, v_, o_;
  std::int64_t heads_, kv_heads_, head_dim_;
  double scale_;
};

class MlaAttention {
 public:
  MlaAttention(const ModelConfig& c, const ParamLookup& get, const OptionalParamLookup& find,
               const std::string& prefix);
  // Expanded form: latent up-projected to per-head keys and values (training, reference).
  at::Tensor packed(const at::Tensor& x, const RotaryTables& rot,
                    const PackedSequences& packed) const;
  // Absorbed form over the latent cache: W_UK folded into the query, W_UV after attention.
  at::Tensor paged(const at::Tensor& x, const RotaryTables& rot, const PagedStep& step,
                   std::vector<at::Tensor>& cache) const;
  static std::vector<std::vector<std::int64_t>> cache_shapes(const ModelConfig& c);
  // The lookup name of the stacked first query projection and kv_a_proj of the layer at
  // `prefix`, then the two linears' prefixes (for stack_linear_rows).
  static std::vector<std::string> stacked_names(const ModelConfig& c, const std::string& prefix);
  void for_each_linear(const LinearVisitor& visit);

 private:
  struct Projected {
    at::Tensor q_nope;  // [T, h, nope]
    at::Tensor q_rope;  // [T, h, rope] (rotated)
    at::Tensor latent;  // [T, kv_lora_rank] (normed)
    at::Tensor k_rope;  // [T, rope] (rotated)
    at::Tensor kv_a;    // [T, kv_lora_rank + rope] as projected (before the norm and RoPE)
  };
  // rotate_query = false leaves q_rope unrotated (the decode query's RoPE kernel rotates it);
  // keys = false leaves latent and k_rope undefined (the caller writes them from kv_a).
  Projected project(const at::Tensor& x, const RotaryTables& rot, bool rotate_query = true,
                    bool keys = true) const;
  // Causal attention of packed sequences in the expanded form: [T, h, v_head_dim].
  at::Tensor expanded(const Projected& p, const PackedSequences& packed) const;
  // Whether decode() runs the CUDA kernel for this query [D, h, lora + rope] and cache.
  bool decode_kernel(const at::Tensor& query, const at::Tensor& cache) const;
  // Attention of decoding rows' queries [D, h, lora + rope] over their pages, then W_UV:
  // [D, h, v_head_dim].
  at::Tensor decode(const at::Tensor& query, const PagedStep& step, const at::Tensor& cache,
                    const at::Tensor& w_uv) const;

  const ModelConfig* c_;
  std::optional<Linear> q_proj_, q_a_proj_, q_b_proj_;
  std::optional<at::Tensor> q_a_norm_;
  Linear kv_a_proj_, kv_b_proj_, o_proj_;
  at::Tensor kv_a_norm_;
  double scale_;
  // The first query projection's and kv_a_proj's weights stacked: both read the normed input.
  std::optional<at::Tensor> q_kv_a_;
};

}  // namespace ponder::model
