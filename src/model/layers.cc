#include "model/layers.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <tuple>

#include "core/error.h"
#include "kernels/fp8.h"
#include "kernels/moe_gemm.h"
#include "kernels/moe_permute.h"
#include "kernels/side_stream.h"
#include "model/fp8_linear.h"

namespace ponder::model {
namespace {

double yarn_mscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// YaRN (as in DeepSeek-V2/V3): blend interpolated and extrapolated frequencies with a linear
// ramp between the correction dims of beta_fast and beta_slow rotations.
at::Tensor yarn_inv_freq(const ModelConfig& c, std::int64_t dim) {
  const RopeScaling& r = c.rope_scaling;
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor pos_freqs = at::pow(c.rope_theta, at::arange(0, dim, 2, f32) / dim);
  const at::Tensor extrapolation = 1.0 / pos_freqs;
  const at::Tensor interpolation = 1.0 / (r.factor * pos_freqs);
  auto correction_dim = [&](double rotations) {
    return dim * std::log(r.original_max_position_embeddings / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(c.rope_theta));
  };
  double low = std::max(std::floor(correction_dim(r.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(r.beta_slow)), static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  const at::Tensor ramp = at::clamp((at::arange(dim / 2, f32) - low) / (high - low), 0, 1);
  const at::Tensor extrapolation_factor = 1 - ramp;
  return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
}

}  // namespace

at::Tensor Linear::operator()(const at::Tensor& x) const {
  at::Tensor y;
  if (weight_scale_inv) {
    y = fp8_linear_prequantized(x, weight, *weight_scale_inv);
  } else if (precision == LinearPrecision::kFp8) {
    y = fp8_linear(x, weight);
  } else if (precision == LinearPrecision::kBf16) {
    y = at::linear(x.to(at::kBFloat16), weight.to(at::kBFloat16)).to(x.scalar_type());
  } else {
    return bias ? at::linear(x, weight, *bias) : at::linear(x, weight);
  }
  return bias ? y + bias->to(y.scalar_type()) : y;
}

at::Tensor Linear::dense_weight(at::ScalarType dtype) const {
  if (!weight_scale_inv) return weight;
  return kernels::dequantize_fp8(
      {weight, weight_scale_inv->to(at::kFloat), kernels::Fp8Scaling::kBlock128x128}, dtype);
}

bool Linear::plain_for(const at::Tensor& x) const {
  if (weight_scale_inv || bias) return false;
  return precision == LinearPrecision::kNative ||
         (precision == LinearPrecision::kBf16 && x.scalar_type() == at::kBFloat16 &&
          weight.scalar_type() == at::kBFloat16);
}

Linear make_linear(const ParamLookup& get, const OptionalParamLookup& find,
                   const std::string& prefix) {
  return Linear{get(prefix + ".weight"), find(prefix + ".weight_scale_inv"),
                find(prefix + ".bias")};
}

std::string stacked_name(const std::vector<std::string>& prefixes) {
  std::string name;
  for (const auto& prefix : prefixes) name += (name.empty() ? "" : "+") + prefix;
  return name;
}

std::optional<at::Tensor> stack_linear_rows(
    const std::vector<std::string>& prefixes,
    std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::map<std::string, at::Tensor*> by_name;
  for (auto& [name, tensor] : params) by_name[name] = &tensor;
  std::vector<at::Tensor*> parts;
  std::int64_t rows = 0;
  for (const auto& prefix : prefixes) {
    const auto it = by_name.find(prefix + ".weight");
    if (it == by_name.end() || by_name.contains(prefix + ".bias") ||
        by_name.contains(prefix + ".weight_scale_inv"))
      return std::nullopt;
    const at::Tensor& w = *it->second;
    const at::Tensor& first = parts.empty() ? w : *parts.front();
    if (w.dim() != 2 || w.size(1) != first.size(1) || w.scalar_type() != first.scalar_type() ||
        w.device() != first.device())
      return std::nullopt;
    parts.push_back(it->second);
    rows += w.size(0);
  }
  c10::NoGradGuard no_grad;
  at::Tensor stacked = at::empty({rows, parts.front()->size(1)}, parts.front()->options());
  std::int64_t at_row = 0;
  for (at::Tensor* part : parts) {
    at::Tensor view = stacked.narrow(0, at_row, part->size(0));
    view.copy_(*part);
    at_row += part->size(0);
    *part = view;
  }
  return stacked;
}

std::vector<at::Tensor> apply_stacked(const at::Tensor& x, const std::optional<at::Tensor>& stacked,
                                      const std::vector<const Linear*>& parts) {
  std::vector<at::Tensor> out;
  const bool one_gemm =
      stacked && !c10::GradMode::is_enabled() &&
      std::all_of(parts.begin(), parts.end(), [&](const Linear* l) { return l->plain_for(x); });
  if (!one_gemm) {
    for (const Linear* l : parts) out.push_back((*l)(x));
    return out;
  }
  const at::Tensor y = at::linear(x, *stacked);
  std::int64_t col = 0;
  for (const Linear* l : parts) {
    out.push_back(y.narrow(-1, col, l->weight.size(0)));
    col += l->weight.size(0);
  }
  return out;
}

Rotary::Rotary(const ModelConfig& c, std::int64_t dim) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  if (c.rope_scaling.type == "yarn") {
    inv_freq_ = yarn_inv_freq(c, dim);
    const RopeScaling& r = c.rope_scaling;
    attention_factor_ =
        (r.mscale != 0 && r.mscale_all_dim != 0)
            ? yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim)
            : yarn_mscale(r.factor, 1.0);
  } else {
    inv_freq_ = 1.0 / at::pow(c.rope_theta, at::arange(0, dim, 2, f32) / dim);
  }
}

RotaryTables Rotary::tables(const at::Tensor& positions) const {
  const at::Tensor freqs =
      positions.to(at::kFloat).unsqueeze(1) * inv_freq_.to(positions.device()).unsqueeze(0);
  return {freqs.cos() * attention_factor_, freqs.sin() * attention_factor_};
}

at::Tensor apply_rotary_half(const at::Tensor& x, const RotaryTables& t) {
  return kernels::rope(x, t.cos, t.sin, /*interleaved=*/false);
}

at::Tensor apply_rotary_interleaved(const at::Tensor& x, const RotaryTables& t) {
  return kernels::rope(x, t.cos, t.sin, /*interleaved=*/true);
}

at::Tensor Mlp::operator()(const at::Tensor& x) const {
  const std::vector<at::Tensor> gate_and_up = apply_stacked(x, gate_up, {&gate, &up});
  return down(kernels::swiglu(gate_and_up[0], gate_and_up[1]));
}

void Mlp::for_each_linear(const LinearVisitor& visit) {
  for (Linear* l : {&gate, &up, &down}) visit(*l);
}

Mlp make_mlp(const ParamLookup& get, const OptionalParamLookup& find, const std::string& prefix) {
  return Mlp{make_linear(get, find, prefix + ".gate_proj"),
             make_linear(get, find, prefix + ".up_proj"),
             make_linear(get, find, prefix + ".down_proj"),
             find(stacked_name({prefix + ".gate_proj", prefix + ".up_proj"}))};
}

MoeRouting Moe::route(const at::Tensor& x) const {
  const ModelConfig& c = *config;
  const kernels::RouteOptions options{c.scoring_func == "sigmoid" ? kernels::RouteScoring::kSigmoid
                                                                  : kernels::RouteScoring::kSoftmax,
                                      c.topk_method == "greedy" ? kernels::RouteGroups::kNone
                                      : c.topk_method == "noaux_tc"
                                          ? kernels::RouteGroups::kTopTwoSum
                                          : kernels::RouteGroups::kMax,
                                      c.n_group,
                                      c.topk_group,
                                      c.num_experts_per_tok,
                                      c.norm_topk_prob,
                                      c.routed_scaling_factor};
  return kernels::route_experts(kernels::router_logits(x, gate), correction_bias, options);
}

at::Tensor sequence_balance_loss(const MoeRouting& routing, const at::Tensor& cu_seqlens) {
  const std::int64_t tokens = routing.scores.size(0), experts = routing.scores.size(1);
  const std::int64_t k = routing.experts.size(1), sequences = cu_seqlens.numel() - 1;
  const at::Tensor lengths =
      (cu_seqlens.narrow(0, 1, sequences) - cu_seqlens.narrow(0, 0, sequences));
  const at::Tensor sequence_of = at::repeat_interleave(at::arange(sequences, cu_seqlens.options()),
                                                       lengths, /*dim=*/0, tokens);
  const at::Tensor chosen =
      at::zeros_like(routing.scores).scatter_(1, routing.experts, 1.0);  // [T, E]
  const at::Tensor normalised = routing.scores / routing.scores.sum(1, /*keepdim=*/true);
  const at::Tensor per_sequence = at::zeros({sequences, experts}, routing.scores.options());
  const at::Tensor t = lengths.to(at::kFloat).clamp_min(1).unsqueeze(1);
  const at::Tensor f = per_sequence.index_add(0, sequence_of, chosen) *
                       (static_cast<double>(experts) / static_cast<double>(k)) / t;
  const at::Tensor p = per_sequence.index_add(0, sequence_of, normalised) / t;
  return (f * p).sum(1).mean();
}

namespace {

// A forward without gradients: the routed experts' rows (grouped paths) or their sum (the loop),
// and the shared experts' output, which on a GPU runs beside the routing, the expert sort and the
// routed GEMMs, filling the SMs that the small routing kernels leave idle.
struct InferenceParts {
  std::optional<ExpertRows> rows;
  at::Tensor routed;
  std::optional<at::Tensor> shared;

  at::Tensor loop_sum() const { return shared ? routed + *shared : routed; }
};

InferenceParts inference_parts(const Moe& moe, const at::Tensor& x) {
  InferenceParts parts;
  const auto routed = [&] {
    const MoeRouting routing = moe.route(x);
    parts.rows = moe.routed_rows(x, routing);
    return parts.rows ? at::Tensor() : moe.routed_loop(x, routing);
  };
  if (!moe.shared) {
    parts.routed = routed();
    return parts;
  }
  std::tie(parts.routed, parts.shared) = kernels::run_beside(
      routed, [&] { return (*moe.shared)(x); }, x.device());
  return parts;
}

}  // namespace

at::Tensor Moe::operator()(const at::Tensor& x) const {
  if (c10::GradMode::is_enabled()) {
    // routed first: the order of autograd's nodes fixes the order in which x's gradient sums
    const at::Tensor routed = routed_experts(x);
    return shared ? routed + (*shared)(x) : routed;
  }
  const InferenceParts parts = inference_parts(*this, x);
  if (!parts.rows) return parts.loop_sum();
  return kernels::combine_experts(parts.rows->y, parts.rows->position, parts.rows->weights,
                                  parts.shared);
}

kernels::AddRmsNorm Moe::add_rms_norm(const at::Tensor& x, const at::Tensor& residual,
                                      const at::Tensor& weight, double eps) const {
  if (c10::GradMode::is_enabled()) return kernels::add_rms_norm(residual, (*this)(x), weight, eps);
  const InferenceParts parts = inference_parts(*this, x);
  if (!parts.rows) return kernels::add_rms_norm(residual, parts.loop_sum(), weight, eps);
  return kernels::combine_experts_add_rms_norm(parts.rows->y, parts.rows->position,
                                               parts.rows->weights, parts.shared, residual, weight,
                                               eps);
}

at::Tensor Moe::routed_experts(const at::Tensor& x) const {
  const MoeRouting routing = route(x);
  if (c10::GradMode::is_enabled())
    *training_load += at::bincount(routing.experts.reshape(-1), {}, gate.size(0)).to(at::kDouble);
  const std::optional<ExpertRows> rows = routed_rows(x, routing);
  return rows ? kernels::combine_experts(rows->y, rows->position, rows->weights)
              : routed_loop(x, routing);
}

std::optional<ExpertRows> Moe::routed_rows(const at::Tensor& x, const MoeRouting& routing) const {
  const bool training = c10::GradMode::is_enabled();
  const LinearPrecision precision = experts.front().gate.precision;
  // FP8 grouped GEMMs quantise the stacked weights: the gate and up halves and each expert must
  // fill whole 128x128 blocks for them to equal the per-expert linears' blocks.
  const bool fp8_grouped = stacked && precision == LinearPrecision::kFp8 &&
                           stacked->down.size(2) % kernels::kFp8Tile == 0 &&
                           stacked->down.size(1) % kernels::kFp8Tile == 0;
  if (fp8_grouped && (grouped_training || !training)) return fp8_grouped_rows(x, routing);
  if (!training) {
    if (!grouped_inference(x.scalar_type(), x.device())) return std::nullopt;
    return grouped_rows(x, routing, inference_gemm);
  }
  if (stacked && grouped_training && precision == LinearPrecision::kBf16 && x.is_cuda()) {
    const StackedExperts w = trainable_stacked();
    return grouped_rows(x, routing, {w.gate_up.to(at::kBFloat16), w.down.to(at::kBFloat16)});
  }
  return std::nullopt;
}

bool Moe::grouped_inference(at::ScalarType dtype, const at::Device& device) const {
  // torch's grouped GEMMs compute in the weights' dtype: not for experts set to run FP8 GEMMs.
  const LinearPrecision precision = experts.front().gate.precision;
  const bool native = precision == LinearPrecision::kNative ||
                      (precision == LinearPrecision::kBf16 && dtype == at::kBFloat16);
  return stacked && native && (device.is_cpu() || dtype == at::kBFloat16);
}

StackedExperts Moe::trainable_stacked() const {
  if (!experts.front().gate.weight.requires_grad()) return *stacked;
  std::vector<at::Tensor> gate_up, down;
  for (const Mlp& e : experts) {
    gate_up.insert(gate_up.end(), {e.gate.weight, e.up.weight});
    down.push_back(e.down.weight);
  }
  return {at::stack(gate_up).view(stacked->gate_up.sizes()), at::stack(down)};
}

at::Tensor Moe::routed_loop(const at::Tensor& x, const MoeRouting& routing) const {
  at::Tensor out = at::zeros_like(x);
  const at::Tensor flat_experts = routing.experts.reshape(-1);
  for (std::int64_t e = 0; e < static_cast<std::int64_t>(experts.size()); ++e) {
    const at::Tensor hits = (flat_experts == e).nonzero().squeeze(1);
    if (hits.numel() == 0) continue;
    const at::Tensor token = at::floor_divide(hits, routing.experts.size(1));
    const at::Tensor weight = routing.weights.reshape(-1).index_select(0, hits).unsqueeze(1);
    const at::Tensor y = experts[e](x.index_select(0, token)) * weight.to(x.scalar_type());
    out = out.index_add(0, token, y);
  }
  return out;
}

ExpertGemm pick_expert_gemm(const at::Tensor& x, std::int64_t top_k,
                            const StackedExperts& weights) {
  if (!x.is_cuda()) return ExpertGemm::kTorchGrouped;
  const bool few = x.size(0) * top_k <= kWgmmaMaxRowsPerExpert * weights.gate_up.size(0);
  const auto kernel = few ? kernels::GroupedKernel::kWgmma : kernels::GroupedKernel::kWgmmaLarge;
  // the down GEMM's input [rows, inner] comes from the kernel: contiguous and aligned
  const bool fits = kernels::grouped_gemm_supported(x, weights.gate_up, kernel) &&
                    kernels::grouped_gemm_supported(
                        at::empty({0, weights.down.size(2)}, x.options()), weights.down, kernel);
  if (!fits) return ExpertGemm::kTorchGrouped;
  return few ? ExpertGemm::kWgmma : ExpertGemm::kWgmmaLarge;
}

at::Tensor Moe::routed_grouped(const at::Tensor& x, const MoeRouting& routing,
                               ExpertGemm gemm) const {
  const ExpertRows r = grouped_rows(x, routing, gemm);
  return kernels::combine_experts(r.y, r.position, r.weights);
}

at::Tensor Moe::routed_grouped(const at::Tensor& x, const MoeRouting& routing,
                               const StackedExperts& weights) const {
  const ExpertRows r = grouped_rows(x, routing, weights);
  return kernels::combine_experts(r.y, r.position, r.weights);
}

at::Tensor Moe::routed_fp8_grouped(const at::Tensor& x, const MoeRouting& routing) const {
  const ExpertRows r = fp8_grouped_rows(x, routing);
  return kernels::combine_experts(r.y, r.position, r.weights);
}

ExpertRows Moe::grouped_rows(const at::Tensor& x, const MoeRouting& routing,
                             ExpertGemm gemm) const {
  if (gemm == ExpertGemm::kAuto) gemm = pick_expert_gemm(x, routing.experts.size(1), *stacked);
  if (gemm == ExpertGemm::kTorchGrouped) return grouped_rows(x, routing, *stacked);
  const kernels::ExpertPermutation p =
      kernels::permute_by_expert(x, routing.experts, stacked->gate_up.size(0));
  using kernels::GroupedKernel;
  const auto kernel = gemm == ExpertGemm::kWgmmaLarge ? GroupedKernel::kWgmmaLarge
                      : gemm == ExpertGemm::kWgmma    ? GroupedKernel::kWgmma
                                                      : GroupedKernel::kFewRows;
  const at::Tensor hidden = kernels::grouped_gemm(p.rows, stacked->gate_up, p.ends, true, kernel);
  return {kernels::grouped_gemm(hidden, stacked->down, p.ends, false, kernel), p.position,
          routing.weights};
}

ExpertRows Moe::grouped_rows(const at::Tensor& x, const MoeRouting& routing,
                             const StackedExperts& weights) const {
  const std::int64_t inner = weights.down.size(2);
  const kernels::ExpertPermutation p = kernels::permute_by_expert(
      x.to(weights.gate_up.scalar_type()), routing.experts, weights.gate_up.size(0));
  const at::Tensor gate_up = at::_grouped_mm(p.rows, weights.gate_up.transpose(1, 2), p.ends);
  const at::Tensor hidden =
      kernels::swiglu(gate_up.narrow(1, 0, inner), gate_up.narrow(1, inner, inner));
  const at::Tensor y = at::_grouped_mm(hidden, weights.down.transpose(1, 2), p.ends);
  return {y.to(x.scalar_type()), p.position, routing.weights};
}

ExpertRows Moe::fp8_grouped_rows(const at::Tensor& x, const MoeRouting& routing) const {
  const StackedExperts w = trainable_stacked();
  const std::int64_t n_experts = w.gate_up.size(0), inner = w.down.size(2);
  const kernels::ExpertPermutation o = kernels::permute_by_expert(x, routing.experts, n_experts);
  // Each expert's rows start on a 1x128 tile boundary (the weight gradient's K runs over them):
  // expert e's sorted rows move by `shift[e]` into zero-padded groups ending at padded_ends.
  const at::Tensor ends = o.ends.to(at::kCPU).to(at::kLong);  // the one host sync
  const auto end_of = ends.accessor<std::int64_t, 1>();
  std::vector<std::int64_t> padded_ends, shift;
  std::int64_t start = 0, padded = 0;
  for (std::int64_t e = 0; e < n_experts; ++e) {
    const std::int64_t end = end_of[e];
    shift.push_back(padded - start);
    padded += (end - start + kernels::kFp8Tile - 1) / kernels::kFp8Tile * kernels::kFp8Tile;
    padded_ends.push_back(padded);
    start = end;
  }
  const auto longs = at::TensorOptions().dtype(at::kLong);
  const at::Tensor sorted = routing.experts.reshape(-1).index_select(0, o.order);
  const at::Tensor row_of =
      at::arange(sorted.size(0), longs.device(x.device())) +
      at::tensor(shift, longs).to(x.device()).index_select(0, sorted);  // [T k] padded rows
  const at::Tensor rows = at::zeros({padded, x.size(1)}, x.options()).index_copy(0, row_of, o.rows);
  const at::Tensor gate_up = fp8_grouped_linear(rows, w.gate_up, padded_ends);
  const at::Tensor hidden =
      kernels::swiglu(gate_up.narrow(1, 0, inner), gate_up.narrow(1, inner, inner));
  const at::Tensor y = fp8_grouped_linear(hidden.contiguous(), w.down, padded_ends);
  return {y.index_select(0, row_of), o.position, routing.weights};
}

std::optional<StackedExperts> stack_experts(
    const ModelConfig& config, const std::string& prefix,
    std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::map<std::string, at::Tensor*> slots;
  for (auto& [name, tensor] : params)
    if (name.starts_with(prefix + ".experts.")) slots[name] = &tensor;
  auto slot = [&](std::int64_t e, const std::string& proj) -> at::Tensor* {
    const auto it = slots.find(prefix + ".experts." + std::to_string(e) + "." + proj + ".weight");
    return it == slots.end() ? nullptr : it->second;
  };
  const std::int64_t experts = config.n_routed_experts;
  if (experts == 0 || !slot(0, "gate_proj") ||
      static_cast<std::int64_t>(slots.size()) != 3 * experts)
    return std::nullopt;  // biases or missing tensors: make_moe reports what is missing
  const at::Tensor first = *slot(0, "gate_proj");
  const std::int64_t inner = first.size(0), hidden = first.size(1);
  c10::NoGradGuard no_grad;
  StackedExperts s{at::empty({experts, 2 * inner, hidden}, first.options()),
                   at::empty({experts, hidden, inner}, first.options())};
  for (std::int64_t e = 0; e < experts; ++e) {
    for (auto [proj, view] : {std::pair{"gate_proj", s.gate_up[e].narrow(0, 0, inner)},
                              {"up_proj", s.gate_up[e].narrow(0, inner, inner)},
                              {"down_proj", s.down[e]}}) {
      at::Tensor* t = slot(e, proj);
      if (!t || t->sizes() != view.sizes() || t->scalar_type() != view.scalar_type())
        throw Error(prefix + ".experts." + std::to_string(e) + "." + proj +
                    ".weight: expected shape " + c10::str(view.sizes()) + " like expert 0's");
      view.copy_(*t);
      *t = view;
    }
  }
  return s;
}

void Moe::for_each_linear(const LinearVisitor& visit) {
  for (Mlp& expert : experts) expert.for_each_linear(visit);
  if (shared) shared->for_each_linear(visit);
}

Moe make_moe(const ModelConfig& config, const ParamLookup& get, const OptionalParamLookup& find,
             const std::string& prefix, std::optional<StackedExperts> stacked) {
  Moe moe;
  moe.config = &config;
  moe.gate = get(prefix + ".gate.weight");
  moe.correction_bias = find(prefix + ".gate.e_score_correction_bias");
  moe.training_load = std::make_shared<at::Tensor>(at::zeros(
      {config.n_routed_experts}, at::TensorOptions(at::kDouble).device(moe.gate.device())));
  for (std::int64_t e = 0; e < config.n_routed_experts; ++e)
    moe.experts.push_back(make_mlp(get, find, prefix + ".experts." + std::to_string(e)));
  moe.stacked = std::move(stacked);
  if (config.n_shared_experts > 0) moe.shared = make_mlp(get, find, prefix + ".shared_experts");
  return moe;
}

at::Tensor gather_pages(const at::Tensor& cache, const at::Tensor& block_table,
                        std::int64_t length) {
  const std::int64_t block_size = cache.size(1);
  const std::int64_t blocks = (length + block_size - 1) / block_size;
  const at::Tensor pages = cache.index_select(0, block_table.narrow(0, 0, blocks).to(at::kLong));
  std::vector<std::int64_t> shape = {blocks * block_size};
  for (std::int64_t d = 2; d < cache.dim(); ++d) shape.push_back(cache.size(d));
  return pages.reshape(shape).narrow(0, 0, length);
}

at::Tensor gather_padded_pages(const at::Tensor& cache, const at::Tensor& block_tables,
                               const at::Tensor& valid) {
  const std::int64_t block_size = cache.size(1), rows = block_tables.size(0);
  const std::int64_t max_context = valid.size(1);
  const std::int64_t blocks = (max_context + block_size - 1) / block_size;
  const at::Tensor pages =
      cache.index_select(0, block_tables.narrow(1, 0, blocks).reshape(-1).to(at::kLong));
  std::vector<std::int64_t> shape = {rows, blocks * block_size};
  for (std::int64_t d = 2; d < cache.dim(); ++d) shape.push_back(cache.size(d));
  at::Tensor keep = valid;
  for (std::int64_t d = 2; d < cache.dim(); ++d) keep = keep.unsqueeze(-1);
  return pages.reshape(shape).narrow(1, 0, max_context).masked_fill(keep.logical_not(), 0);
}

void scatter_pages(at::Tensor& cache, const at::Tensor& slot_mapping, const at::Tensor& rows) {
  std::vector<std::int64_t> shape = {cache.size(0) * cache.size(1)};
  for (std::int64_t d = 2; d < cache.dim(); ++d) shape.push_back(cache.size(d));
  cache.view(shape).index_copy_(0, slot_mapping, rows.to(cache.scalar_type()));
}

at::Tensor decode_causal_mask(std::int64_t n, std::int64_t ctx, const at::Device& device) {
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor query_pos = at::arange(ctx - n, ctx, opts).unsqueeze(1);
  return at::arange(ctx, opts).unsqueeze(0) <= query_pos;
}

}  // namespace ponder::model
