#include "model/fp8_linear.h"

#include <torch/csrc/autograd/custom_function.h>

#include "core/error.h"
#include "kernels/fp8.h"

namespace ponder::model {
namespace {

using kernels::Fp8Scaling;
using kernels::Fp8Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Inputs: x [..., in], weight [out, in] (FP32 master or FP8 data) and scale_inv (none for a
// master weight, which is block-quantised here; the FP8 weight's scales otherwise).
class Fp8LinearFunction : public torch::autograd::Function<Fp8LinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& scale_inv) {
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});  // [M, in]
    const Fp8Tensor w =
        scale_inv ? Fp8Tensor{weight, scale_inv->to(at::kFloat), Fp8Scaling::kBlock128x128}
                  : kernels::quantize_fp8(weight, Fp8Scaling::kBlock128x128);
    ctx->save_for_backward({x2, w.data, w.scale});
    ctx->saved_data["weight_dtype"] = weight.scalar_type();
    // y [M, out]
    const at::Tensor y =
        kernels::fp8_matmul(kernels::quantize_fp8(x2, Fp8Scaling::kTile1x128), w, x.scalar_type());
    std::vector<std::int64_t> shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return y.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x2 = saved[0];
    const Fp8Tensor w{saved[1], saved[2], Fp8Scaling::kBlock128x128};
    const at::Tensor dy = grads[0].reshape({-1, w.data.size(0)});  // [M, out]
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      // dx [M, in] = dy [M, out] . W [out, in]: K = out, W's blocks transposed
      std::vector<std::int64_t> shape = grads[0].sizes().vec();
      shape.back() = x2.size(1);
      dx = kernels::fp8_matmul(kernels::quantize_fp8(dy, Fp8Scaling::kTile1x128), w.t(),
                               x2.scalar_type())
               .view(shape);
    }
    if (ctx->needs_input_grad(1)) {
      // dW [out, in] = dy^T [out, M] . x [M, in]: K = M, tiles run down the token dimension
      dw = kernels::fp8_matmul(kernels::quantize_fp8_transposed(dy),
                               kernels::quantize_fp8_transposed(x2),
                               ctx->saved_data["weight_dtype"].toScalarType());
    }
    return {dx, dw, at::Tensor()};
  }
};

}  // namespace

at::Tensor fp8_linear(const at::Tensor& x, const at::Tensor& weight) {
  return Fp8LinearFunction::apply(x, weight, std::nullopt);
}

at::Tensor fp8_linear_prequantized(const at::Tensor& x, const at::Tensor& weight,
                                   const at::Tensor& scale_inv) {
  if (weight.scalar_type() != at::kFloat8_e4m3fn)
    throw Error("fp8_linear_prequantized: weight must be float8_e4m3fn, got " +
                std::string(c10::toString(weight.scalar_type())));
  return Fp8LinearFunction::apply(x, weight, scale_inv);
}

}  // namespace ponder::model
