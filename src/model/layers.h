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
#include "kernels/moe_route.h"
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
  // True when operator()(x) is at::linear(x, weight) exactly (no bias, scale or cast).
  bool plain_for(const at::Tensor& x) const;
};

Linear make_linear(const ParamLookup& get, const OptionalParamLookup& find,
                   const std::string& prefix);

// Linears that read the same input with their weights stacked by rows: one GEMM, one read of the
// input. The lookup name of the stack of the linears at `prefixes` (their names joined by '+').
std::string stacked_name(const std::vector<std::string>& prefixes);
// Copies the weights of the linears at `prefixes` into one [sum of outs, in] tensor and makes
// each parameter a view of it (in-place updates reach both); nullopt, nothing changed, when one
// is missing or has a bias or an FP8 scale, or their in-features or dtypes differ.
std::optional<at::Tensor> stack_linear_rows(
    const std::vector<std::string>& prefixes,
    std::vector<std::pair<std::string, at::Tensor>>& params);
// Each of `parts` applied to x: narrows of one GEMM over `stacked` (their stacked weights) when
// every part is plain_for(x) and no gradient is recorded, else each part's own GEMM.
std::vector<at::Tensor> apply_stacked(const at::Tensor& x, const std::optional<at::Tensor>& stacked,
                                      const std::vector<const Linear*>& parts);

// Rotary tables for the given positions: cos/sin [T, rotary_dim / 2], already multiplied by
// YaRN's attention factor.
struct RotaryTables {
  at::Tensor cos, sin;
};

class Rotary {
 public:
  Rotary(const ModelConfig& config, std::int64_t rotary_dim);
  RotaryTables tables(const at::Tensor& positions) const;
  // Keeps the frequencies on the positions' device (no host copy per step).
  void to(const at::Device& device) { inv_freq_ = inv_freq_.to(device); }

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
  std::optional<at::Tensor> gate_up;  // gate's and up's weights stacked (stack_linear_rows)
  at::Tensor operator()(const at::Tensor& x) const;
  void for_each_linear(const LinearVisitor& visit);
};

Mlp make_mlp(const ParamLookup& get, const OptionalParamLookup& find, const std::string& prefix);

// weights [T, k] float32, experts [T, k] int64, scores [T, E] float32 (before bias and top-k).
using MoeRouting = kernels::ExpertRouting;

// Every routed expert's weights in two tensors, the per-expert Mlp weights being views of them:
// gate_up [experts, 2 * inner, hidden] (gate rows then up rows), down [experts, hidden, inner].
struct StackedExperts {
  at::Tensor gate_up, down;
};

// The routed experts' outputs before their weighted sum: y [T k, hidden] sorted by expert, with
// each pair's sorted row and routing weight (kernels::combine_experts' inputs).
struct ExpertRows {
  at::Tensor y, position, weights;
};

struct Moe {
  const ModelConfig* config = nullptr;
  at::Tensor gate;                            // [experts, hidden]
  std::optional<at::Tensor> correction_bias;  // [experts], noaux_tc
  std::vector<Mlp> experts;
  std::optional<StackedExperts> stacked;
  std::optional<Mlp> shared;
  // Tokens routed to each expert [experts] by forwards with gradients enabled (training) since
  // the last reset; shared so copies of the layer count into one place.
  std::shared_ptr<at::Tensor> training_load;
  // FP32 router logits, then kernels::route_experts (the fused kernel without gradients on a GPU).
  MoeRouting route(const at::Tensor& x) const;
  // Grouped GEMMs for the routed experts while training (FP8 or BF16 linears, stacked weights).
  bool grouped_training = true;
  // The routed experts' GEMMs of operator() without gradients (CausalLM::set_expert_gemm).
  ExpertGemm inference_gemm = ExpertGemm::kAuto;
  // Routed experts plus shared ones. The routed part runs as grouped GEMMs over stacked weights:
  // without gradients when the experts compute in the weights' dtype (BF16 on a GPU, any dtype on
  // the CPU); for FP8 linears when hidden and expert widths are multiples of 128 (with gradients
  // if grouped_training); with gradients for BF16 linears on a GPU if grouped_training.
  // Otherwise one expert at a time.
  at::Tensor operator()(const at::Tensor& x) const;
  // kernels::add_rms_norm(residual, (*this)(x), weight, eps): the layer's output added to the
  // residual stream and normed by the next norm. Without gradients on a GPU, the routed experts'
  // combine, the shared experts' add, the residual add and the norm are one kernel.
  kernels::AddRmsNorm add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                   const at::Tensor& weight, double eps) const;
  // The routed experts' weighted sum [T, hidden] by the path operator() picks.
  at::Tensor routed_experts(const at::Tensor& x) const;
  // Whether operator() takes the grouped path for inputs of `dtype` on `device` without
  // gradients (the loop syncs with the host once per expert).
  bool grouped_inference(at::ScalarType dtype, const at::Device& device) const;
  // The routed experts' weighted sum [T, hidden]: the reference loop (differentiable, one host
  // sync per expert); tokens sorted by expert through two grouped GEMMs on the stacked weights
  // (no host sync); and the FP8 grouped GEMMs over 128-row aligned groups (differentiable, one
  // host sync).
  at::Tensor routed_loop(const at::Tensor& x, const MoeRouting& routing) const;
  at::Tensor routed_grouped(const at::Tensor& x, const MoeRouting& routing,
                            ExpertGemm gemm = ExpertGemm::kAuto) const;
  // torch's grouped GEMMs on `weights` in their dtype (x converted there and back):
  // differentiable, the BF16 training path.
  at::Tensor routed_grouped(const at::Tensor& x, const MoeRouting& routing,
                            const StackedExperts& weights) const;
  at::Tensor routed_fp8_grouped(const at::Tensor& x, const MoeRouting& routing) const;
  // The rows that routed_grouped and routed_fp8_grouped sum, and those of the grouped path that
  // routed_experts picks (nullopt where it runs the loop).
  ExpertRows grouped_rows(const at::Tensor& x, const MoeRouting& routing, ExpertGemm gemm) const;
  ExpertRows grouped_rows(const at::Tensor& x, const MoeRouting& routing,
                          const StackedExperts& weights) const;
  ExpertRows fp8_grouped_rows(const at::Tensor& x, const MoeRouting& routing) const;
  std::optional<ExpertRows> routed_rows(const at::Tensor& x, const MoeRouting& routing) const;
  // The stacked expert weights, or while the per-expert weights require gradients a stack of
  // them that autograd routes back to each expert.
  StackedExperts trainable_stacked() const;
  // The experts' linears (the router `gate` is not a Linear: it stays in high precision).
  void for_each_linear(const LinearVisitor& visit);
};

// What ExpertGemm::kAuto runs for `x` [T, hidden] routed to `top_k` experts each of `weights`:
// kWgmma when the kernel takes these shapes on a compute capability 9.0 GPU and the experts get
// few rows each (at most kWgmmaMaxRowsPerExpert on average), kWgmmaLarge (128 x 256 tiles) when
// they get more and it takes the shapes there, else kTorchGrouped. The few-rows kernel reads
// an expert's weights once per 64 of its rows; at a mean of 48 (balanced routing) almost no
// expert passes 64. bench_moe on the H200 (bench/RESULTS.md): V2-Lite 1.39x and 1.33x torch's at
// 24 and 48 rows, 0.71x at 96.
inline constexpr std::int64_t kWgmmaMaxRowsPerExpert = 48;
ExpertGemm pick_expert_gemm(const at::Tensor& x, std::int64_t top_k, const StackedExperts& weights);

// DeepSeek-V3's complementary sequence-wise balance loss (without its alpha), averaged over the
// packed sequences of cu_seqlens [B+1]: sum_i f_i P_i with f_i = E / (k T) * (tokens routing to
// expert i), P_i = mean over tokens of the affinity normalised over experts. Only P is
// differentiable.
at::Tensor sequence_balance_loss(const MoeRouting& routing, const at::Tensor& cu_seqlens);

// Moves the routed experts of the MoE layer at `prefix` (HF names, no biases) into one
// StackedExperts and points their entries in `params` at views of it; nullopt when the layer's
// experts have biases. The old per-expert tensors are released as they are replaced.
std::optional<StackedExperts> stack_experts(
    const ModelConfig& config, const std::string& prefix,
    std::vector<std::pair<std::string, at::Tensor>>& params);

Moe make_moe(const ModelConfig& config, const ParamLookup& get, const OptionalParamLookup& find,
             const std::string& prefix, std::optional<StackedExperts> stacked = std::nullopt);

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
