// Multi-head Latent Attention (DeepSeek-V2 §2.1): keys and values are up-projected from a shared
// kv_lora_rank latent; a small decoupled RoPE key is shared by all heads.
#include <atomic>
#include <mutex>

#include "core/log.h"
#include "kernels/mla_decode.h"
#include "kernels/mla_decode_kernel.h"
#include "model/attention.h"

namespace ponder::model {
namespace {

std::mutex paths_mutex;
std::vector<std::string> paths_taken;  // decode_attention_paths()

// Says once per process and path which attention the paged decode runs (the CUDA kernel wants a
// BF16 query and 64-token pages; anything else takes the ATen reference), and records it.
void log_decode_path(bool kernel, const at::Tensor& query, const at::Tensor& cache) {
  static std::atomic<bool> logged[2];
  if (logged[kernel ? 1 : 0].exchange(true)) return;
  std::string path = fmt::format(
      "{} ({} query, {} cache pages of {} tokens)",
      kernel ? "CUDA kernel (kernels::mla_decode_cuda)" : "ATen reference",
      c10::toString(query.scalar_type()), c10::toString(cache.scalar_type()), cache.size(1));
  log::info("MLA decode attention: {} on {}", path, query.device().str());
  const std::lock_guard lock(paths_mutex);
  paths_taken.push_back(std::move(path));
}

}  // namespace

std::vector<std::string> decode_attention_paths() {
  const std::lock_guard lock(paths_mutex);
  return paths_taken;
}

MlaAttention::MlaAttention(const ModelConfig& c, const ParamLookup& get,
                           const OptionalParamLookup& find, const std::string& prefix)
    : c_(&c),
      kv_a_proj_(make_linear(get, find, prefix + ".kv_a_proj_with_mqa")),
      kv_b_proj_(make_linear(get, find, prefix + ".kv_b_proj")),
      o_proj_(make_linear(get, find, prefix + ".o_proj")),
      kv_a_norm_(get(prefix + ".kv_a_layernorm.weight")),
      scale_(c.attention_scale()) {
  if (c.q_lora_rank) {
    q_a_proj_ = make_linear(get, find, prefix + ".q_a_proj");
    q_a_norm_ = get(prefix + ".q_a_layernorm.weight");
    q_b_proj_ = make_linear(get, find, prefix + ".q_b_proj");
  } else {
    q_proj_ = make_linear(get, find, prefix + ".q_proj");
  }
  q_kv_a_ = find(stacked_names(c, prefix).front());
}

std::vector<std::string> MlaAttention::stacked_names(const ModelConfig& c,
                                                     const std::string& prefix) {
  const std::vector<std::string> parts = {prefix + (c.q_lora_rank ? ".q_a_proj" : ".q_proj"),
                                          prefix + ".kv_a_proj_with_mqa"};
  return {stacked_name(parts), parts[0], parts[1]};
}

void MlaAttention::for_each_linear(const LinearVisitor& visit) {
  for (std::optional<Linear>* l : {&q_proj_, &q_a_proj_, &q_b_proj_})
    if (*l) visit(**l);
  for (Linear* l : {&kv_a_proj_, &kv_b_proj_, &o_proj_}) visit(*l);
}

std::vector<std::vector<std::int64_t>> MlaAttention::cache_shapes(const ModelConfig& c) {
  return {{c.kv_lora_rank + c.qk_rope_head_dim}};
}

MlaAttention::Projected MlaAttention::project(const at::Tensor& x, const RotaryTables& rot,
                                              bool rotate_query, bool keys) const {
  const ModelConfig& c = *c_;
  const std::int64_t tokens = x.size(0), heads = c.num_attention_heads;
  // the first query projection and kv_a [T, kv_lora_rank + rope] (the compressed latent and the
  // shared RoPE key) in one GEMM when their weights are stacked
  const std::vector<at::Tensor> first =
      apply_stacked(x, q_kv_a_, {q_proj_ ? &*q_proj_ : &*q_a_proj_, &kv_a_proj_});
  const at::Tensor& kv_a = first[1];
  // q [T, h, nope + rope]
  const at::Tensor q =
      (q_proj_ ? first[0] : (*q_b_proj_)(rms_norm(first[0], *q_a_norm_, c.rms_norm_eps)))
          .view({tokens, heads, c.qk_head_dim()});
  Projected p;
  p.q_nope = q.narrow(-1, 0, c.qk_nope_head_dim);
  p.q_rope = q.narrow(-1, c.qk_nope_head_dim, c.qk_rope_head_dim);
  if (rotate_query) p.q_rope = apply_rotary_interleaved(p.q_rope, rot);
  p.kv_a = kv_a;
  if (!keys) return p;
  p.latent = rms_norm(kv_a.narrow(-1, 0, c.kv_lora_rank), kv_a_norm_, c.rms_norm_eps);
  p.k_rope = apply_rotary_interleaved(
                 kv_a.narrow(-1, c.kv_lora_rank, c.qk_rope_head_dim).unsqueeze(1), rot)
                 .squeeze(1);
  return p;
}

at::Tensor MlaAttention::expanded(const Projected& p, const PackedSequences& packed) const {
  const ModelConfig& c = *c_;
  const std::int64_t tokens = p.latent.size(0), heads = c.num_attention_heads;
  // kv [T, h, nope + v] from the latent
  const at::Tensor kv =
      kv_b_proj_(p.latent).view({tokens, heads, c.qk_nope_head_dim + c.v_head_dim});
  const at::Tensor k = at::cat({kv.narrow(-1, 0, c.qk_nope_head_dim),
                                p.k_rope.unsqueeze(1).expand({tokens, heads, c.qk_rope_head_dim})},
                               -1);
  const at::Tensor v = kv.narrow(-1, c.qk_nope_head_dim, c.v_head_dim);
  const at::Tensor q = at::cat({p.q_nope, p.q_rope}, -1);
  return packed_causal_attention(q, k, v, packed, scale_);
}

at::Tensor MlaAttention::packed(const at::Tensor& x, const RotaryTables& rot,
                                const PackedSequences& packed) const {
  const at::Tensor out = expanded(project(x, rot), packed);
  return o_proj_(out.reshape({x.size(0), -1}));
}

bool MlaAttention::decode_kernel(const at::Tensor& query, const at::Tensor& cache) const {
  return c_->kv_lora_rank == kernels::kMlaLatent && c_->qk_rope_head_dim == kernels::kMlaRope &&
         kernels::mla_decode_supported(query, cache);
}

at::Tensor MlaAttention::decode(const at::Tensor& query, const PagedStep& step,
                                const at::Tensor& cache, const at::Tensor& w_uv) const {
  const ModelConfig& c = *c_;
  const bool kernel = decode_kernel(query, cache);
  log_decode_path(kernel, query, cache);
  // The kernel just before this one is the query's RoPE kernel (mla_decode_query_cuda) or its
  // cat, launched without PDL after the cache scatter: it writes none of the tables, lengths and
  // pages, and everything before it had finished when it started, so the first tile may be read
  // before the PDL wait.
  const at::Tensor out_latent =
      kernel ? kernels::mla_decode_cuda(query, cache, step.decode_tables, step.decode_lens, scale_,
                                        0, /*check_inputs=*/false, /*allow_wgmma=*/true,
                                        /*early_first_tile=*/true)
             : kernels::mla_decode_reference(
                   query,
                   kernels::mla_cache_entries(
                       gather_padded_pages(cache, step.decode_tables, step.decode_valid),
                       c.kv_lora_rank, query.scalar_type()),
                   step.decode_valid, scale_, c.kv_lora_rank);
  // out [D, h, v] = out_latent W_UV^T per head, written by cuBLAS straight into token-major rows
  // (einsum's result is head-major: o_proj's reshape would copy it)
  const at::Tensor out =
      at::empty({out_latent.size(0), w_uv.size(0), w_uv.size(1)}, out_latent.options());
  at::Tensor by_head = out.transpose(0, 1);
  at::bmm_out(by_head, out_latent.transpose(0, 1), w_uv.transpose(1, 2));
  return out;
}

at::Tensor MlaAttention::paged(const at::Tensor& x, const RotaryTables& rot, const PagedStep& step,
                               std::vector<at::Tensor>& cache) const {
  const ModelConfig& c = *c_;
  const std::int64_t tokens = x.size(0), heads = c.num_attention_heads;
  // A step of decoding tokens only (rows in order) skips the gathers and the scatter of the rows;
  // with the decode kernel its query is assembled in place, the RoPE kernel last (see below), and
  // its cache rows in the model's dtype are normed, rotated and written in one pass.
  const bool decode_only =
      step.prefill.empty() && step.fresh.tokens == 0 && step.decode_rows.defined();
  at::Tensor query;
  if (decode_only && x.is_cuda())
    query = at::empty({tokens, heads, c.kv_lora_rank + c.qk_rope_head_dim}, x.options());
  const bool assembled = query.defined() && decode_kernel(query, cache[0]);
  const bool write_rows = decode_only && cache[0].scalar_type() == x.scalar_type();
  const Projected p = project(x, rot, /*rotate_query=*/!assembled, /*keys=*/!write_rows);
  if (write_rows)
    kernels::mla_cache_write(cache[0], p.kv_a, kv_a_norm_, rot.cos, rot.sin,
                             step.batch->slot_mapping, c.rms_norm_eps);
  else  // an FP8 cache (uint8 rows) stores the latent quantised, the RoPE key in BF16
    scatter_pages(cache[0], step.batch->slot_mapping,
                  cache[0].scalar_type() == at::kByte
                      ? kernels::mla_cache_quantize(p.latent, p.k_rope)
                      : at::cat({p.latent, p.k_rope}, -1));
  // W_UK [h, nope, lora] and W_UV [h, v, lora] are slices of kv_b_proj
  const at::Tensor w_kv = kv_b_proj_.dense_weight(x.scalar_type())
                              .view({heads, c.qk_nope_head_dim + c.v_head_dim, c.kv_lora_rank});
  const at::Tensor w_uk = w_kv.narrow(1, 0, c.qk_nope_head_dim);
  const at::Tensor w_uv = w_kv.narrow(1, c.qk_nope_head_dim, c.v_head_dim);
  // q_latent [n, h, lora]: W_UK folded into the queries q_nope [n, h, nope]
  const auto absorb = [&](const at::Tensor& q_nope) {
    return at::einsum("thd,hdc->thc", {q_nope, w_uk});
  };
  if (decode_only) {
    // The cache rows' write above came first. The absorbed latent goes straight into the query's
    // first columns (one GEMM), then the RoPE kernel writes its last ones and triggers the decode
    // kernel, which reads its first tile while RoPE runs.
    if (assembled)
      kernels::mla_decode_query_cuda(query, p.q_nope, w_uk, p.q_rope, rot.cos, rot.sin);
    else
      query = at::cat({absorb(p.q_nope), p.q_rope}, -1);
    return o_proj_(decode(query, step, cache[0], w_uv).reshape({tokens, -1}));
  }
  at::Tensor out = at::empty({tokens, heads, c.v_head_dim}, x.options());
  if (step.decode_rows.defined())
    out.index_copy_(0, step.decode_rows,
                    decode(at::cat({absorb(p.q_nope.index_select(0, step.decode_rows)),
                                    p.q_rope.index_select(0, step.decode_rows)},
                                   -1),
                           step, cache[0], w_uv));
  if (step.fresh.tokens > 0) {
    // Chunks from position 0 need no cache reads: the expanded form over their own rows.
    const Projected rows{step.fresh_of(p.q_nope),
                         step.fresh_of(p.q_rope),
                         step.fresh_of(p.latent),
                         step.fresh_of(p.k_rope),
                         {}};
    const at::Tensor fresh = expanded(rows, step.fresh);
    if (step.fresh.tokens == tokens) return o_proj_(fresh.reshape({tokens, -1}));
    step.put_fresh(out, fresh);
  }
  for (const std::size_t s : step.prefill) {
    const std::int64_t start = step.query_start[s], n = step.query_start[s + 1] - start;
    const std::int64_t ctx = step.context_lens[s];
    // entries [ctx, lora + rope]
    const at::Tensor entries = kernels::mla_cache_entries(
        gather_pages(cache[0], step.batch->block_tables[static_cast<std::int64_t>(s)], ctx),
        c.kv_lora_rank, x.scalar_type());
    const at::Tensor latent = entries.narrow(-1, 0, c.kv_lora_rank);
    const at::Tensor k_rope = entries.narrow(-1, c.kv_lora_rank, c.qk_rope_head_dim);
    // scores [h, n, ctx]
    const at::Tensor scores =
        (at::einsum("nhc,kc->hnk", {absorb(p.q_nope.narrow(0, start, n)), latent}) +
         at::einsum("nhr,kr->hnk", {p.q_rope.narrow(0, start, n), k_rope})) *
        scale_;
    const at::Tensor masked =
        scores.masked_fill(decode_causal_mask(n, ctx, x.device()).logical_not(), -INFINITY);
    const at::Tensor probs = masked.to(at::kFloat).softmax(-1).to(x.scalar_type());
    // out [n, h, v]: attention over the latent, then W_UV
    const at::Tensor out_latent = at::einsum("hnk,kc->nhc", {probs, latent});
    out.narrow(0, start, n).copy_(at::einsum("nhc,hvc->nhv", {out_latent, w_uv}));
  }
  return o_proj_(out.reshape({tokens, heads * c.v_head_dim}));
}

}  // namespace ponder::model
