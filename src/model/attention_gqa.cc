#include "model/attention.h"

namespace ponder::model {

GqaAttention::GqaAttention(const ModelConfig& c, const ParamLookup& get,
                           const OptionalParamLookup& find, const std::string& prefix)
    : q_(make_linear(get, find, prefix + ".q_proj")),
      k_(make_linear(get, find, prefix + ".k_proj")),
      v_(make_linear(get, find, prefix + ".v_proj")),
      o_(make_linear(get, find, prefix + ".o_proj")),
      heads_(c.num_attention_heads),
      kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim),
      scale_(c.attention_scale()) {}

void GqaAttention::for_each_linear(const LinearVisitor& visit) {
  for (Linear* l : {&q_, &k_, &v_, &o_}) visit(*l);
}

std::vector<std::vector<std::int64_t>> GqaAttention::cache_shapes(const ModelConfig& c) {
  return {{c.num_key_value_heads, c.head_dim}, {c.num_key_value_heads, c.head_dim}};
}

at::Tensor GqaAttention::packed(const at::Tensor& x, const RotaryTables& rot,
                                const PackedSequences& packed) const {
  const std::int64_t tokens = x.size(0);
  const at::Tensor q = apply_rotary_half(q_(x).view({tokens, heads_, head_dim_}), rot);
  const at::Tensor k = apply_rotary_half(k_(x).view({tokens, kv_heads_, head_dim_}), rot);
  const at::Tensor v = v_(x).view({tokens, kv_heads_, head_dim_});
  const at::Tensor out = packed_causal_attention(q, k, v, packed, scale_);
  return o_(out.reshape({tokens, heads_ * head_dim_}));
}

at::Tensor GqaAttention::paged(const at::Tensor& x, const RotaryTables& rot, const PagedStep& step,
                               std::vector<at::Tensor>& cache) const {
  const std::int64_t tokens = x.size(0), group = heads_ / kv_heads_;
  const at::Tensor q = apply_rotary_half(q_(x).view({tokens, heads_, head_dim_}), rot);
  const at::Tensor k = apply_rotary_half(k_(x).view({tokens, kv_heads_, head_dim_}), rot);
  const at::Tensor v = v_(x).view({tokens, kv_heads_, head_dim_});
  scatter_pages(cache[0], step.batch->slot_mapping, k);
  scatter_pages(cache[1], step.batch->slot_mapping, v);
  // keys/values [S, heads, ctx, d] from pages [S, ctx, kv_heads, d]
  auto heads_first = [&](const at::Tensor& pages) {
    return pages.to(x.scalar_type()).repeat_interleave(group, -2).transpose(-3, -2);
  };
  at::Tensor out = at::empty({tokens, heads_, head_dim_}, x.options());
  if (step.decode_rows.defined()) {
    auto padded = [&](const at::Tensor& c) {
      return heads_first(gather_padded_pages(c, step.decode_tables, step.decode_valid));
    };
    const at::Tensor o = at::scaled_dot_product_attention(
        q.index_select(0, step.decode_rows).unsqueeze(2), padded(cache[0]), padded(cache[1]),
        step.decode_valid.unsqueeze(1).unsqueeze(1), 0.0, false, scale_);
    out.index_copy_(0, step.decode_rows, o.squeeze(2));
  }
  if (step.fresh.tokens > 0)  // chunks from position 0 attend among their own rows
    step.put_fresh(out, packed_causal_attention(step.fresh_of(q), step.fresh_of(k),
                                                step.fresh_of(v), step.fresh, scale_));
  for (const std::size_t s : step.prefill) {
    const std::int64_t start = step.query_start[s], n = step.query_start[s + 1] - start;
    const std::int64_t ctx = step.context_lens[s];
    const at::Tensor table = step.batch->block_tables[static_cast<std::int64_t>(s)];
    auto keys = [&](const at::Tensor& c) {
      return heads_first(gather_pages(c, table, ctx)).unsqueeze(0);
    };
    const at::Tensor o = at::scaled_dot_product_attention(
        q.narrow(0, start, n).transpose(0, 1).unsqueeze(0), keys(cache[0]), keys(cache[1]),
        decode_causal_mask(n, ctx, x.device()), 0.0, false, scale_);
    out.narrow(0, start, n).copy_(o.squeeze(0).transpose(0, 1));
  }
  return o_(out.reshape({tokens, heads_ * head_dim_}));
}

}  // namespace ponder::model
