#include "model/transformer.h"

#include <c10/core/GradMode.h>

#include <fstream>

#include "core/error.h"
#include "kernels/mla_decode_kernel.h"
#include "kernels/sampling.h"
#include "model/checkpointing.h"
#include "model/safetensors.h"

namespace ponder::model {
namespace {

std::int64_t rotary_dim(const ModelConfig& c) {
  return c.is_mla() ? c.qk_rope_head_dim : c.head_dim;
}

std::vector<std::int64_t> to_host(const at::Tensor& t) {
  const at::Tensor cpu = t.to(at::kCPU, at::kLong).contiguous();
  return {cpu.data_ptr<std::int64_t>(), cpu.data_ptr<std::int64_t>() + cpu.numel()};
}

// Every context fits its block table and the pages it covers lie in the cache: checked once per
// step (one synchronisation), so the decode kernels of the layers skip their own checks.
void check_block_tables(const StepBatch& batch, const PagedStep& step, const PagedKvCache& cache) {
  const std::int64_t capacity = batch.block_tables.size(1) * cache.block_size;
  for (const std::int64_t len : step.context_lens)
    if (len < 1 || len > capacity)
      throw Error("forward_paged: context length " + std::to_string(len) + " outside [1, " +
                  std::to_string(capacity) + "] (block table width x block size)");
  if (batch.block_tables.numel() == 0) return;
  const at::Tensor& tables = batch.block_tables;
  const at::Tensor in_context =
      at::arange(tables.size(1), tables.options()).unsqueeze(0) <
      ((batch.context_lens + cache.block_size - 1) / cache.block_size).unsqueeze(1);
  const at::Tensor used = at::where(in_context, tables, 0);
  const std::int64_t pages = cache.layers.front().front().size(0);
  if (!(used.min().ge(0) & used.max().lt(pages)).item<bool>())
    throw Error("forward_paged: a block table names a page outside the cache's " +
                std::to_string(pages) + " pages");
}

// The linears of each layer that read the same input, stacked (stack_linear_rows) under their
// lookup names: MLA's first query projection with kv_a_proj, and the dense or shared-expert
// MLP's gate with up.
std::map<std::string, at::Tensor> stack_rows(
    const ModelConfig& c, std::vector<std::pair<std::string, at::Tensor>>& params) {
  std::vector<std::vector<std::string>> groups;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l);
    if (c.is_mla()) {
      const auto names = MlaAttention::stacked_names(c, prefix + ".self_attn");
      groups.push_back({names[1], names[2]});
    }
    const std::string mlp = prefix + (c.is_moe_layer(l) ? ".mlp.shared_experts" : ".mlp");
    groups.push_back({mlp + ".gate_proj", mlp + ".up_proj"});
  }
  std::map<std::string, at::Tensor> stacked;
  for (const auto& group : groups)
    if (auto rows = stack_linear_rows(group, params)) stacked[stacked_name(group)] = *rows;
  return stacked;
}

}  // namespace

PagedStep PagedStep::from(const StepBatch& batch, std::int64_t block_size) {
  if (batch.decode_only) {
    PagedStep step{&batch};
    step.decode_rows = at::arange(batch.input_ids.size(0), batch.input_ids.options());
    step.decode_tables = batch.block_tables;
    step.decode_lens = batch.context_lens;
    step.decode_context = batch.block_tables.size(1) * block_size;
    step.decode_valid = at::arange(step.decode_context, batch.context_lens.options()).unsqueeze(0) <
                        step.decode_lens.unsqueeze(1);
    return step;
  }
  PagedStep step{&batch, to_host(batch.query_start), to_host(batch.context_lens)};
  std::vector<std::int64_t> decoding, rows, fresh_cu = {0}, fresh_rows;
  for (std::size_t s = 0; s < step.context_lens.size(); ++s) {
    const std::int64_t start = step.query_start[s], n = step.query_start[s + 1] - start;
    if (n > 1 && n == step.context_lens[s]) {
      for (std::int64_t r = start; r < start + n; ++r) fresh_rows.push_back(r);
      fresh_cu.push_back(fresh_cu.back() + n);
      continue;
    }
    if (n != 1) {
      step.prefill.push_back(s);
      continue;
    }
    decoding.push_back(static_cast<std::int64_t>(s));
    rows.push_back(step.query_start[s]);
    step.decode_context = std::max(step.decode_context, step.context_lens[s]);
  }
  const at::Device device = batch.input_ids.device();
  step.fresh = PackedSequences::from_host(fresh_cu, device);
  if (!fresh_rows.empty()) {
    step.fresh_first = fresh_rows.front();
    if (fresh_rows.back() - fresh_rows.front() + 1 != static_cast<std::int64_t>(fresh_rows.size()))
      step.fresh_rows = at::tensor(fresh_rows, at::kLong).to(device);
  }
  if (decoding.empty()) return step;
  const at::Tensor index = at::tensor(decoding, at::kLong).to(device);
  step.decode_rows = at::tensor(rows, at::kLong).to(device);
  step.decode_tables = batch.block_tables.index_select(0, index);
  step.decode_lens = batch.context_lens.index_select(0, index);
  step.decode_valid =
      at::arange(step.decode_context, at::TensorOptions(at::kLong).device(device)).unsqueeze(0) <
      step.decode_lens.unsqueeze(1);
  return step;
}

at::Tensor PagedStep::fresh_of(const at::Tensor& t) const {
  return fresh_rows.defined() ? t.index_select(0, fresh_rows)
                              : t.narrow(0, fresh_first, fresh.tokens);
}

void PagedStep::put_fresh(at::Tensor& out, const at::Tensor& rows) const {
  if (fresh_rows.defined())
    out.index_copy_(0, fresh_rows, rows);
  else
    out.narrow(0, fresh_first, fresh.tokens).copy_(rows);
}

TransformerLM::TransformerLM(ModelConfig config,
                             std::vector<std::pair<std::string, at::Tensor>> params)
    : config_(std::move(config)),
      params_(std::move(params)),
      rotary_(config_, rotary_dim(config_)) {
  std::map<std::int64_t, StackedExperts> stacked;
  for (std::int64_t l = 0; l < config_.num_hidden_layers; ++l)
    if (config_.is_moe_layer(l))
      if (auto s = stack_experts(config_, "model.layers." + std::to_string(l) + ".mlp", params_))
        stacked[l] = std::move(*s);
  const std::map<std::string, at::Tensor> stacked_rows = stack_rows(config_, params_);
  for (const auto& [name, tensor] : params_) by_name_[name] = tensor;
  by_name_.insert(stacked_rows.begin(), stacked_rows.end());
  const ParamLookup get = [this](const std::string& name) {
    auto it = by_name_.find(name);
    if (it == by_name_.end())
      throw Error("checkpoint is missing tensor " + name + " (model_type " + config_.model_type +
                  ")");
    return it->second;
  };
  const OptionalParamLookup find = [this](const std::string& name) -> std::optional<at::Tensor> {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? std::nullopt : std::optional<at::Tensor>(it->second);
  };
  embed_ = get("model.embed_tokens.weight");
  final_norm_ = get("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_ : get("lm_head.weight");
  rotary_.to(embed_.device());
  for (std::int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l);
    Layer layer{
        get(prefix + ".input_layernorm.weight"), get(prefix + ".post_attention_layernorm.weight"),
        config_.is_mla()
            ? decltype(Layer::attention)(MlaAttention(config_, get, find, prefix + ".self_attn"))
            : decltype(Layer::attention)(GqaAttention(config_, get, find, prefix + ".self_attn")),
        config_.is_moe_layer(l)
            ? decltype(Layer::ffn)(
                  make_moe(config_, get, find, prefix + ".mlp",
                           stacked.contains(l) ? std::optional(stacked[l]) : std::nullopt))
            : decltype(Layer::ffn)(make_mlp(get, find, prefix + ".mlp"))};
    layers_.push_back(std::move(layer));
  }
}

template <class AttentionCall>
TransformerLM::Stream TransformerLM::layer_forward(std::size_t l, const Stream& in,
                                                   AttentionCall&& call,
                                                   const at::Tensor& cu_seqlens) {
  Layer& layer = layers_[l];
  const double eps = config_.rms_norm_eps;
  const at::Tensor attention =
      std::visit([&](auto& a) { return call(a, in.normed, l); }, layer.attention);
  const kernels::AddRmsNorm mid =
      kernels::add_rms_norm(in.x, attention, layer.post_attention_norm, eps);
  const at::Tensor& next_norm = l + 1 < layers_.size() ? layers_[l + 1].input_norm : final_norm_;
  const auto* moe = std::get_if<Moe>(&layer.ffn);
  const bool balance_loss = moe && cu_seqlens.defined() && training_.sequence_balance_loss;
  if (moe && !balance_loss && !c10::GradMode::is_enabled()) {
    // inference: the MoE output's combine, residual add and next norm in one kernel on a GPU
    const kernels::AddRmsNorm next = moe->add_rms_norm(mid.normed, mid.sum, next_norm, eps);
    return {next.sum, next.normed, {}};
  }
  const at::Tensor ffn_out = std::visit([&](auto& ffn) { return ffn(mid.normed); }, layer.ffn);
  const at::Tensor balance =
      balance_loss ? sequence_balance_loss(moe->route(mid.normed), cu_seqlens) : at::Tensor();
  const kernels::AddRmsNorm next = kernels::add_rms_norm(mid.sum, ffn_out, next_norm, eps);
  return {next.sum, next.normed, balance};
}

// Each residual add is fused with the norm that follows it (kernels::add_rms_norm). `packed` is
// empty (no cu_seqlens) for the paged inference forward.
template <class AttentionCall>
at::Tensor TransformerLM::run_layers(const at::Tensor& input_ids, const at::Tensor& positions,
                                     const PackedSequences& packed, AttentionCall&& call) {
  const at::Tensor& cu_seqlens = packed.cu_seqlens;
  const RotaryTables rot = rotary_.tables(positions);
  const auto attend = [&](auto& attention, const at::Tensor& x, std::size_t l) {
    return call(attention, x, rot, l);
  };
  const at::Tensor x = embed_.index_select(0, input_ids);  // [T, hidden]
  Stream stream{
      x, rms_norm(x, layers_.empty() ? final_norm_ : layers_[0].input_norm, config_.rms_norm_eps)};
  const bool recompute =
      training_.activation_checkpointing && c10::GradMode::is_enabled() && cu_seqlens.defined();
  std::vector<at::Tensor> balance;
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    if (recompute) {
      // Runs again in the backward pass, after this function returned: captures by value.
      const auto out = checkpointed(
          [this, l, rot, packed](const std::vector<at::Tensor>& in) {
            const auto attend_packed = [&](auto& attention, const at::Tensor& x, std::size_t) {
              return attention.packed(x, rot, packed);
            };
            const Stream s = layer_forward(l, {in[0], in[1], {}}, attend_packed, packed.cu_seqlens);
            return std::vector<at::Tensor>{s.x, s.normed, s.balance_loss};
          },
          {stream.x, stream.normed});
      stream = {out[0], out[1], out[2]};
    } else {
      stream = layer_forward(l, stream, attend, cu_seqlens);
    }
    if (stream.balance_loss.defined()) balance.push_back(stream.balance_loss);
  }
  if (c10::GradMode::is_enabled() && cu_seqlens.defined())
    balance_loss_ = balance.empty() ? at::Tensor() : at::stack(balance).sum();
  return stream.normed;
}

at::Tensor TransformerLM::forward_hidden(const at::Tensor& input_ids, const at::Tensor& positions,
                                         const at::Tensor& cu_seqlens) {
  const PackedSequences packed = PackedSequences::from(cu_seqlens, input_ids.device());
  return run_layers(input_ids, positions, packed,
                    [&](auto& attention, const at::Tensor& x, const RotaryTables& rot,
                        std::size_t) { return attention.packed(x, rot, packed); });
}

at::Tensor TransformerLM::forward_paged(const StepBatch& batch, PagedKvCache& cache) {
  c10::NoGradGuard no_grad;
  if (static_cast<std::int64_t>(cache.layers.size()) != config_.num_hidden_layers)
    throw Error("forward_paged: cache has " + std::to_string(cache.layers.size()) +
                " layers, model has " + std::to_string(config_.num_hidden_layers));
  const PagedStep step = PagedStep::from(batch, cache.block_size);
  if (!batch.decode_only) check_block_tables(batch, step, cache);
  return run_layers(batch.input_ids, batch.positions, PackedSequences{},
                    [&](auto& attention, const at::Tensor& x, const RotaryTables& rot,
                        std::size_t l) { return attention.paged(x, rot, step, cache.layers[l]); });
}

KvCacheDtype parse_kv_cache_dtype(const std::string& value, const std::string& field) {
  if (value == "auto") return KvCacheDtype::kAuto;
  if (value == "fp8") return KvCacheDtype::kFp8;
  throw Error(field + ": unsupported value '" + value + "' (expected one of: auto, fp8)");
}

KvLayout TransformerLM::kv_layout(KvCacheDtype cache_dtype) const {
  if (cache_dtype == KvCacheDtype::kAuto)
    return {config_.num_hidden_layers,
            config_.is_mla() ? MlaAttention::cache_shapes(config_)
                             : GqaAttention::cache_shapes(config_),
            embed_.scalar_type()};
  if (!config_.is_mla())
    throw Error("kv_cache_dtype fp8: only MLA models (DeepSeek V2/V3) have an FP8 latent cache; " +
                config_.model_type + " uses GQA attention (use auto)");
  if (config_.kv_lora_rank % kernels::kMlaFp8Group != 0)
    throw Error("kv_cache_dtype fp8: kv_lora_rank must be a multiple of " +
                std::to_string(kernels::kMlaFp8Group) +
                " (this model: " + std::to_string(config_.kv_lora_rank) + ")");
  return {config_.num_hidden_layers,
          {{kernels::mla_cache_fp8_bytes(config_.kv_lora_rank, config_.qk_rope_head_dim)}},
          at::kByte};
}

bool TransformerLM::graph_capturable() const {
  // GQA's padded decode attention has no host syncs either, but only MLA models were captured and
  // checked against eager decoding on a GPU (tests/kernels/engine_gpu_test.cc).
  if (!embed_.is_cuda() || !config_.is_mla()) return false;
  for (const Layer& layer : layers_)
    if (const auto* moe = std::get_if<Moe>(&layer.ffn);
        moe && !moe->grouped_inference(embed_.scalar_type(), embed_.device()))
      return false;
  return true;
}

at::Tensor TransformerLM::logits(const at::Tensor& hidden) {
  // BF16/FP16 on a GPU: exact products of the inputs summed in FP32, no FP32 copy of the head.
  if (hidden.is_cuda() && hidden.scalar_type() != at::kFloat &&
      hidden.scalar_type() == lm_head_.scalar_type())
    return at::mm(hidden, lm_head_.t(), at::kFloat);
  return at::linear(hidden.to(at::kFloat), lm_head_.to(at::kFloat));
}

at::Tensor TransformerLM::token_logprobs(const at::Tensor& hidden, const at::Tensor& targets) {
  return kernels::token_logprobs(hidden, lm_head_, targets);
}

void TransformerLM::set_linear_precision(LinearPrecision precision) {
  const LinearVisitor set = [precision](Linear& linear) { linear.precision = precision; };
  for (auto& layer : layers_) {
    std::visit([&](auto& attention) { attention.for_each_linear(set); }, layer.attention);
    std::visit([&](auto& ffn) { ffn.for_each_linear(set); }, layer.ffn);
  }
}

void TransformerLM::set_training_options(const TrainingOptions& options) {
  training_ = options;
  for (auto& layer : layers_)
    if (auto* moe = std::get_if<Moe>(&layer.ffn)) moe->grouped_training = options.grouped_experts;
}

void TransformerLM::set_expert_gemm(ExpertGemm gemm) {
  for (auto& layer : layers_)
    if (auto* moe = std::get_if<Moe>(&layer.ffn)) moe->inference_gemm = gemm;
}

std::unique_ptr<CausalLM> load_causal_lm(const std::filesystem::path& dir, at::Device device,
                                         at::ScalarType dtype, Fp8Weights fp8) {
  ModelConfig config = ModelConfig::from_file(dir / "config.json");
  const Checkpoint checkpoint(dir);
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& name : checkpoint.names()) {
    if (fp8 == Fp8Weights::kKeep && checkpoint.is_fp8(name)) {
      const std::string scale = name + "_scale_inv";
      params.emplace_back(name, checkpoint.load(name, at::kFloat8_e4m3fn).to(device));
      params.emplace_back(scale, checkpoint.load(scale, at::kFloat).to(device));
      continue;
    }
    // The routing bias stays FP32 as in DeepSeek-V3; everything else takes the requested dtype.
    const bool keep_fp32 = name.ends_with("e_score_correction_bias");
    params.emplace_back(name, checkpoint.load(name, keep_fp32 ? at::kFloat : dtype).to(device));
  }
  try {
    return std::make_unique<TransformerLM>(std::move(config), std::move(params));
  } catch (const Error& e) {
    throw Error(dir.string() + ": " + e.what());
  }
}

at::Tensor TransformerLM::update_routing_bias(double rate) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> loads;
  for (auto& layer : layers_) {
    auto* moe = std::get_if<Moe>(&layer.ffn);
    if (!moe || !moe->correction_bias) continue;
    const at::Tensor load = moe->training_load->clone();
    moe->correction_bias->add_((load.mean() - load).sign().to(moe->correction_bias->scalar_type()),
                               rate);
    moe->training_load->zero_();
    loads.push_back(load);
  }
  return loads.empty() ? at::Tensor() : at::stack(loads);
}

std::vector<at::Tensor> TransformerLM::routing_loads() {
  std::vector<at::Tensor> loads;
  for (auto& layer : layers_)
    if (auto* moe = std::get_if<Moe>(&layer.ffn); moe && moe->correction_bias)
      loads.push_back(*moe->training_load);
  return loads;
}

void save_causal_lm(CausalLM& model, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << model.config().to_json().dump(2) << "\n";
  save_safetensors(dir, model.named_parameters());
}

}  // namespace ponder::model
