#include "kernels/rms_norm.h"

#include <c10/core/GradMode.h>

#include "core/error.h"

#ifdef PONDER_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "kernels/rms_norm_kernel.h"
#endif

namespace ponder::kernels {

bool built_with_cuda() {
#ifdef PONDER_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const bool needs_grad =
      c10::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (built_with_cuda() && x.is_cuda() && !needs_grad && x.scalar_type() == weight.scalar_type())
    return rms_norm_cuda(x, weight, eps);
  return rms_norm_reference(x, weight, eps);
}

at::Tensor rms_norm_cuda(const at::Tensor& x, const at::Tensor& weight, double eps) {
#ifdef PONDER_WITH_CUDA
  if (!x.is_cuda() || !weight.is_cuda())
    throw Error("rms_norm_cuda: tensors must be on a CUDA device");
  if (weight.dim() != 1 || weight.size(0) != x.size(-1) || weight.scalar_type() != x.scalar_type())
    throw Error("rms_norm_cuda: weight must be [cols] with x's dtype");
  const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
  at::Tensor out = at::empty_like(rows);
  RmsNormParams p{
      rows.data_ptr(), weight.contiguous().data_ptr(), out.data_ptr(), rows.size(0), rows.size(1),
      rows.size(1),    static_cast<float>(eps)};
  switch (x.scalar_type()) {
    case at::kFloat:
      p.type = ElementType::kFloat32;
      break;
    case at::kBFloat16:
      p.type = ElementType::kBFloat16;
      break;
    case at::kHalf:
      p.type = ElementType::kFloat16;
      break;
    default:
      throw Error("rms_norm_cuda: unsupported dtype (float32, bfloat16, float16)");
  }
  if (p.rows > 0) {
    const int rc = launch_rms_norm(p, c10::cuda::getCurrentCUDAStream().stream());
    if (rc != 0)
      throw Error("rms_norm_cuda: kernel launch failed with CUDA error " + std::to_string(rc));
  }
  return out.view(x.sizes());
#else
  (void)x, (void)weight, (void)eps;
  throw Error(
      "rms_norm_cuda: this ponder was built without CUDA (nvcc was not found at configure time)");
#endif
}

}  // namespace ponder::kernels
