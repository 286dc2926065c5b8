#include "kernels/rms_norm.h"

#include "core/error.h"

#ifdef PONDER_WITH_CUDA
#include "kernels/rms_norm_kernel.h"
#endif

namespace ponder::kernels {
namespace {

bool same_dtypes(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type();
}

#ifdef PONDER_WITH_CUDA
// Launches the kernel on x (+ residual); returns {x + residual or undefined, normed}.
AddRmsNorm launch(const char* who, const at::Tensor& x, const at::Tensor* residual,
                  const at::Tensor& weight, double eps) {
  require_cuda(who, {x, weight});
  if (weight.dim() != 1 || weight.size(0) != x.size(-1) || !same_dtypes(weight, x))
    throw Error(std::string(who) + ": weight must be [cols] with x's dtype");
  const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
  const at::Tensor w = weight.contiguous();
  RmsNormParams p{rows.data_ptr(),
                  nullptr,
                  w.data_ptr(),
                  nullptr,
                  nullptr,
                  rows.size(0),
                  rows.size(1),
                  rows.size(1),
                  static_cast<float>(eps),
                  element_type(x, who)};
  at::Tensor out = at::empty_like(rows), sum, res;
  p.out = out.data_ptr();
  if (residual) {
    require_cuda(who, {*residual});
    if (residual->sizes() != x.sizes() || !same_dtypes(*residual, x))
      throw Error(std::string(who) + ": residual must match x's shape and dtype");
    res = residual->reshape({-1, x.size(-1)}).contiguous();
    sum = at::empty_like(rows);
    p.residual = res.data_ptr();
    p.sum_out = sum.data_ptr();
  }
  if (p.rows > 0) check_launch(launch_rms_norm(p, current_stream()), who);
  return {residual ? sum.view(x.sizes()) : sum, out.view(x.sizes())};
}
#endif

}  // namespace

at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (use_kernel({x, weight}) && same_dtypes(x, weight)) return rms_norm_cuda(x, weight, eps);
  return rms_norm_reference(x, weight, eps);
}

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
#ifdef PONDER_WITH_CUDA
  return launch("rms_norm_cuda", x, nullptr, weight, eps).normed;
#else
  (void)x, (void)weight, (void)eps;
  no_cuda("rms_norm_cuda");
#endif
}

AddRmsNorm add_rms_norm_reference(const at::Tensor& x, const at::Tensor& residual,
                                  const at::Tensor& weight, double eps) {
  const at::Tensor sum = x + residual;
  return {sum, rms_norm_reference(sum, weight, eps)};
}

AddRmsNorm add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                        double eps) {
  if (use_kernel({x, residual, weight}) && same_dtypes(x, weight) && same_dtypes(x, residual) &&
      x.sizes() == residual.sizes())
    return add_rms_norm_cuda(x, residual, weight, eps);
  return add_rms_norm_reference(x, residual, weight, eps);
}

AddRmsNorm add_rms_norm_cuda(const at::Tensor& x, const at::Tensor& residual,
                             const at::Tensor& weight, double eps) {
#ifdef PONDER_WITH_CUDA
  return launch("add_rms_norm_cuda", x, &residual, weight, eps);
#else
  (void)x, (void)residual, (void)weight, (void)eps;
  no_cuda("add_rms_norm_cuda");
#endif
}

}  // namespace ponder::kernels
