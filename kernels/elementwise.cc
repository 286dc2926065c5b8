#include "kernels/elementwise.h"

#include "core/error.h"
#include "kernels/rms_norm.h"

#ifdef PONDER_WITH_CUDA
#include "kernels/elementwise_kernel.h"
#endif

namespace ponder::kernels {

at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up) {
  return at::silu(gate) * up;
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  if (use_kernel({gate, up}) && gate.sizes() == up.sizes() &&
      gate.scalar_type() == up.scalar_type())
    return swiglu_cuda(gate, up);
  return swiglu_reference(gate, up);
}

at::Tensor swiglu_cuda(const at::Tensor& gate, const at::Tensor& up) {
#ifdef PONDER_WITH_CUDA
  const char* who = "swiglu_cuda";
  require_cuda(who, {gate, up});
  if (gate.sizes() != up.sizes() || gate.scalar_type() != up.scalar_type() || gate.dim() == 0)
    throw Error("swiglu_cuda: gate and up must have the same shape and dtype");
  const std::int64_t cols = gate.size(-1);
  // 2-D views keep a strided row (e.g. halves of a fused gate_up projection) without a copy.
  auto rows_of = [&](const at::Tensor& t) {
    const at::Tensor v = t.reshape({-1, cols});
    return v.stride(1) == 1 ? v : v.contiguous();
  };
  const at::Tensor g = rows_of(gate), u = rows_of(up);
  at::Tensor out = at::empty({g.size(0), cols}, gate.options());
  const SwigluParams p{g.data_ptr(), u.data_ptr(), out.data_ptr(), g.size(0),
                       cols,         g.stride(0),  u.stride(0),    element_type(gate, who)};
  if (out.numel() > 0) check_launch(launch_swiglu(p, current_stream()), who);
  return out.view(gate.sizes());
#else
  (void)gate, (void)up;
  no_cuda("swiglu_cuda");
#endif
}

at::Tensor rope_reference(const at::Tensor& x, const at::Tensor& cos_table,
                          const at::Tensor& sin_table, bool interleaved) {
  const at::Tensor cos = cos_table.unsqueeze(1).to(x.scalar_type());
  const at::Tensor sin = sin_table.unsqueeze(1).to(x.scalar_type());
  const std::int64_t dim = x.size(-1), half = dim / 2;
  const at::Tensor a = interleaved ? x.slice(-1, 0, dim, 2) : x.narrow(-1, 0, half);
  const at::Tensor b = interleaved ? x.slice(-1, 1, dim, 2) : x.narrow(-1, half, half);
  return at::cat({a * cos - b * sin, b * cos + a * sin}, -1);
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                bool interleaved) {
  if (use_kernel({x, cos, sin}) && x.dim() == 3 && x.stride(2) == 1 && x.size(-1) % 2 == 0)
    return rope_cuda(x, cos, sin, interleaved);
  return rope_reference(x, cos, sin, interleaved);
}

at::Tensor rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     bool interleaved) {
  at::Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  rope_cuda_out(out, x, cos, sin, interleaved);
  return out;
}

void rope_cuda_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& cos,
                   const at::Tensor& sin, bool interleaved, bool launch_dependents_early) {
#ifdef PONDER_WITH_CUDA
  const char* who = "rope_cuda";
  require_cuda(who, {out, x, cos, sin});
  if (x.dim() != 3 || x.size(-1) % 2 != 0)
    throw Error("rope_cuda: x must be [tokens, heads, even dim]");
  if (out.sizes() != x.sizes() || out.scalar_type() != x.scalar_type() || out.stride(2) != 1)
    throw Error("rope_cuda: out must have x's shape and dtype, its last dim contiguous");
  const std::int64_t tokens = x.size(0), half = x.size(2) / 2;
  if (cos.sizes() != at::IntArrayRef{tokens, half} || sin.sizes() != cos.sizes())
    throw Error("rope_cuda: cos/sin must be [tokens, dim / 2]");
  const at::Tensor xv = x.stride(2) == 1 ? x : x.contiguous();
  const at::Tensor c = cos.to(at::kFloat).contiguous(), s = sin.to(at::kFloat).contiguous();
  const RopeParams p{xv.data_ptr(),
                     c.data_ptr<float>(),
                     s.data_ptr<float>(),
                     out.data_ptr(),
                     tokens,
                     x.size(1),
                     x.size(2),
                     xv.stride(0),
                     xv.stride(1),
                     out.stride(0),
                     out.stride(1),
                     interleaved,
                     launch_dependents_early,
                     element_type(x, who)};
  if (out.numel() > 0) check_launch(launch_rope(p, current_stream()), who);
#else
  (void)out, (void)x, (void)cos, (void)sin, (void)interleaved, (void)launch_dependents_early;
  no_cuda("rope_cuda");
#endif
}

void mla_cache_write_reference(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                               const at::Tensor& cos, const at::Tensor& sin,
                               const at::Tensor& slots, double eps) {
  const std::int64_t lora = weight.size(0), rope = kv_a.size(-1) - lora;
  const at::Tensor latent = rms_norm_reference(kv_a.narrow(-1, 0, lora), weight, eps);
  const at::Tensor key =
      rope_reference(kv_a.narrow(-1, lora, rope).unsqueeze(1), cos, sin, true).squeeze(1);
  pages.view({-1, pages.size(-1)})
      .index_copy_(0, slots, at::cat({latent, key}, -1).to(pages.scalar_type()));
}

void mla_cache_write(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                     const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& slots,
                     double eps) {
  if (use_kernel({pages, kv_a, weight, cos, sin, slots}) &&
      pages.scalar_type() == kv_a.scalar_type() && weight.scalar_type() == kv_a.scalar_type() &&
      pages.is_contiguous() && kv_a.dim() == 2 && kv_a.stride(1) == 1)
    return mla_cache_write_cuda(pages, kv_a, weight, cos, sin, slots, eps);
  mla_cache_write_reference(pages, kv_a, weight, cos, sin, slots, eps);
}

void mla_cache_write_cuda(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                          const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& slots,
                          double eps) {
#ifdef PONDER_WITH_CUDA
  const char* who = "mla_cache_write_cuda";
  require_cuda(who, {pages, kv_a, weight, cos, sin, slots});
  const std::int64_t tokens = kv_a.size(0), lora = weight.numel(), rope = kv_a.size(-1) - lora;
  if (kv_a.dim() != 2 || kv_a.stride(1) != 1 || weight.dim() != 1 || rope < 2 || rope % 2 != 0 ||
      !pages.is_contiguous() || pages.size(-1) != lora + rope ||
      pages.scalar_type() != kv_a.scalar_type() || weight.scalar_type() != kv_a.scalar_type())
    throw Error(
        "mla_cache_write_cuda: expected kv_a [T, lora + even rope] (last dim contiguous), weight "
        "[lora] and contiguous pages [..., lora + rope], all of one dtype");
  if (cos.sizes() != at::IntArrayRef{tokens, rope / 2} || sin.sizes() != cos.sizes() ||
      slots.sizes() != at::IntArrayRef{tokens} || slots.scalar_type() != at::kLong)
    throw Error("mla_cache_write_cuda: cos/sin must be [T, rope / 2] and slots int64 [T]");
  const at::Tensor c = cos.to(at::kFloat).contiguous(), s = sin.to(at::kFloat).contiguous();
  const at::Tensor w = weight.contiguous();
  const MlaCacheWriteParams p{kv_a.data_ptr(),
                              w.data_ptr(),
                              c.data_ptr<float>(),
                              s.data_ptr<float>(),
                              slots.data_ptr<std::int64_t>(),
                              pages.data_ptr(),
                              tokens,
                              lora,
                              rope,
                              kv_a.stride(0),
                              static_cast<float>(eps),
                              element_type(kv_a, who)};
  if (tokens > 0) check_launch(launch_mla_cache_write(p, current_stream()), who);
#else
  (void)pages, (void)kv_a, (void)weight, (void)cos, (void)sin, (void)slots, (void)eps;
  no_cuda("mla_cache_write_cuda");
#endif
}

}  // namespace ponder::kernels
