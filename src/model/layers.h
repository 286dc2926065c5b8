// Building blocks shared by every model family: RMSNorm, rotary embeddings (default and YaRN),
// SwiGLU MLP, DeepSeekMoE routing and experts, and attention over packed or paged sequences.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/rms_norm.h"
#include "model/causal_lm.h"
#include "model/config.h"

namespace ponder::model {

using kernels::rms_norm;

// Looks up parameters by HF name while a model is assembled; missing names fail clearly.
using ParamLookup = std::function<at::Tensor(const std::string& name)>;
using OptionalParamLookup = std::function<std::optional<at::Tensor>(const std::string& name)>;

// A linear layer y = x W^T (+ b). Its GEMM runs at `precision`; a weight kept as FP8 from a
// DeepSeek-V3 checkpoint (with weight_scale_inv) always runs the FP8 path.
struct Linear {
  at::Tensor weight;                           // [out, in]
  std::optional<at::Tensor> weight_scale_inv;  // [ceil(out/128), ceil(in/128)] for FP8 weights
  std::optional<at::Tensor> bias;
  LinearPrecision precision = LinearPrecision::kNative;
  at::Tensor operator()(const at::Tensor& x) const;
  // The weight itself, or dequantised to dtype when kept as FP8: for the absorbed MLA math.
  at::Tensor dense_weight(at::ScalarType dtype) const;
};

Linear make_linear(const ParamLookup& get, const OptionalParamLookup& find,
                   const std::string& prefix);

// Rotary tables for the given positions: cos/sin [T, rotary_dim / 2], already multiplied by
// YaRN's attention factor.
struct RotaryTables {
  at::Tensor cos, sin;
};

class Rotary {
 public:
  Rotary(const ModelConfig& config, std::int64_t rotary_dim);
  RotaryTables tables(const at::Tensor& positions) const;

 private:
  at::Tensor inv_freq_;  // [rotary_dim / 2] float32
  double attention_factor_ = 1.0;
};

// x [T, heads, d]: Llama layout (rotate halves) and DeepSeek layout (interleaved pairs, output
// de-interleaved as [even rotated, odd rotated]).
at::Tensor apply_rotary_half(const at::Tensor& x, const RotaryTables& t);
at::Tensor apply_rotary_interleaved(const at::Tensor& x, const RotaryTables& t);

using LinearVisitor = std::function<void(Linear&)>;

struct Mlp {
  Linear gate, up, down;
  at::Tensor operator()(const at::Tensor& x) const;
  void for_each_linear(const LinearVisitor& visit);
};

Mlp make_mlp(const ParamLookup& get, const OptionalParamLookup& find, const std::string& prefix);

struct MoeRouting {
  at::Tensor weights;  // [T, k] float32
  at::Tensor experts;  // [T, k] int64
};

struct Moe {
  const ModelConfig* config = nullptr;
  at::Tensor gate;                            // [experts, hidden]
  std::optional<at::Tensor> correction_bias;  // [experts], noaux_tc
  std::vector<Mlp> experts;
  std::optional<Mlp> shared;
  // Tokens routed to each expert [experts] by forwards with gradients enabled (training) since
  // the last reset; shared so copies of the layer count into one place.
  std::shared_ptr<at::Tensor> training_load;
  MoeRouting route(const at::Tensor& x) const;
  at::Tensor operator()(const at::Tensor& x) const;
  // The experts' linears (the router `gate` is not a Linear: it stays in high precision).
  void for_each_linear(const LinearVisitor& visit);
};

Moe make_moe(const ModelConfig& config, const ParamLookup& get, const OptionalParamLookup& find,
             const std::string& prefix);

// Causal attention of each packed sequence's queries over its own keys.
// q [T, h, dk], k [T, h, dk], v [T, h, dv] -> [T, h, dv]; cu_seqlens [B+1].
at::Tensor packed_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& cu_seqlens, double scale);

// Rows of a paged cache tensor [blocks, block_size, ...] for one sequence's first `length` tokens.
at::Tensor gather_pages(const at::Tensor& cache, const at::Tensor& block_table,
                        std::int64_t length);
// Rows [S, max_context, ...] of each block table's pages, zero where `valid` [S, max_context] is
// false (free slots may hold anything, NaN included, and 0 * NaN would leak through attention).
at::Tensor gather_padded_pages(const at::Tensor& cache, const at::Tensor& block_tables,
                               const at::Tensor& valid);
// Writes rows [T, ...] into a paged cache at slot_mapping [T].
void scatter_pages(at::Tensor& cache, const at::Tensor& slot_mapping, const at::Tensor& rows);
// Boolean mask [n, ctx]: the n new queries of a sequence sit at the end of its ctx tokens.
at::Tensor decode_causal_mask(std::int64_t n, std::int64_t ctx, const at::Device& device);

}  // namespace ponder::model
