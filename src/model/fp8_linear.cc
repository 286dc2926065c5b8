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
    // A master weight's blocks come with their transpose for the input gradient (one pass).
    const kernels::Fp8Blocks blocks =
        scale_inv ? kernels::Fp8Blocks{} : kernels::quantize_fp8_blocks_with_transpose(weight);
    const Fp8Tensor w =
        scale_inv ? Fp8Tensor{weight, scale_inv->to(at::kFloat), Fp8Scaling::kBlock128x128}
                  : blocks.matrix(0);
    ctx->save_for_backward({x2, w.data, w.scale, scale_inv ? at::Tensor() : blocks.data_t[0]});
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
    // W^T [in, out]: stored K-major by the forward, else a transposed view (copied by the GEMM)
    const Fp8Tensor wt =
        saved[3].defined() ? Fp8Tensor{saved[3], w.scale.t(), Fp8Scaling::kBlock128x128} : w.t();
    const at::Tensor dy = grads[0].reshape({-1, w.data.size(0)});  // [M, out]
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      // dx [M, in] = dy [M, out] . W [out, in]: K = out, W's blocks transposed
      std::vector<std::int64_t> shape = grads[0].sizes().vec();
      shape.back() = x2.size(1);
      dx = kernels::fp8_matmul(kernels::quantize_fp8(dy, Fp8Scaling::kTile1x128), wt,
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

Fp8Tensor rows(const Fp8Tensor& q, std::int64_t start, std::int64_t len) {
  return {q.data.narrow(0, start, len), q.scale.narrow(0, start, len), q.scaling};
}

// Inputs: x [P, in], weight [groups, out, in]; the group ends ride in saved_data.
class Fp8GroupedLinearFunction : public torch::autograd::Function<Fp8GroupedLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::vector<std::int64_t>& ends) {
    const kernels::Fp8Blocks w = kernels::quantize_fp8_blocks_with_transpose(weight);
    const Fp8Tensor xq = kernels::quantize_fp8(x, Fp8Scaling::kTile1x128);
    ctx->save_for_backward({x, w.data, w.scale, w.data_t});
    ctx->saved_data["ends"] = ends;
    ctx->saved_data["weight_dtype"] = weight.scalar_type();
    at::Tensor y = at::empty({x.size(0), weight.size(1)}, x.options());  // [P, out]
    for_each_group(ends, [&](std::int64_t g, std::int64_t start, std::int64_t len) {
      kernels::fp8_matmul(rows(xq, start, len), w.matrix(g), x.scalar_type(),
                          y.narrow(0, start, len));
    });
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const kernels::Fp8Blocks w{saved[1], saved[2], saved[3]};
    const std::vector<std::int64_t> ends = ctx->saved_data["ends"].toIntVector();
    const at::Tensor dy = grads[0].contiguous();  // [P, out]
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      // dx_g [len, in] = dy_g [len, out] . W_g [out, in]: K = out, W_g^T stored K-major
      const Fp8Tensor dyq = kernels::quantize_fp8(dy, Fp8Scaling::kTile1x128);
      dx = at::empty_like(x);
      for_each_group(ends, [&](std::int64_t g, std::int64_t start, std::int64_t len) {
        kernels::fp8_matmul(rows(dyq, start, len), w.transposed(g), x.scalar_type(),
                            dx.narrow(0, start, len));
      });
    }
    if (ctx->needs_input_grad(1)) {
      // dW_g [out, in] = dy_g^T . x_g: K = the group's tokens; groups without tokens get zeros
      const auto dyt = kernels::quantize_fp8_transposed_segments(dy, ends);
      const auto xt = kernels::quantize_fp8_transposed_segments(x, ends);
      const auto dtype = ctx->saved_data["weight_dtype"].toScalarType();
      dw = at::zeros({w.data.size(0), w.data.size(1), w.data.size(2)}, x.options().dtype(dtype));
      for_each_group(ends, [&](std::int64_t g, std::int64_t, std::int64_t) {
        kernels::fp8_matmul(dyt[g], xt[g], dtype, dw[g]);
      });
    }
    return {dx, dw, at::Tensor()};
  }

 private:
  // visit(group, first row, rows) for every group with rows.
  template <class Visit>
  static void for_each_group(const std::vector<std::int64_t>& ends, Visit&& visit) {
    std::int64_t start = 0;
    for (std::size_t g = 0; g < ends.size(); ++g) {
      if (ends[g] > start) visit(static_cast<std::int64_t>(g), start, ends[g] - start);
      start = ends[g];
    }
  }
};

}  // namespace

at::Tensor fp8_linear(const at::Tensor& x, const at::Tensor& weight) {
  return Fp8LinearFunction::apply(x, weight, std::nullopt);
}

at::Tensor fp8_grouped_linear(const at::Tensor& x, const at::Tensor& weight,
                              const std::vector<std::int64_t>& ends) {
  if (x.dim() != 2 || weight.dim() != 3 || x.size(1) != weight.size(2) ||
      static_cast<std::int64_t>(ends.size()) != weight.size(0))
    throw Error(
        "fp8_grouped_linear: expected x [P, in], weight [groups, out, in] and one end per "
        "group; got x " +
        c10::str(x.sizes()) + ", weight " + c10::str(weight.sizes()) + ", " +
        std::to_string(ends.size()) + " ends");
  return Fp8GroupedLinearFunction::apply(x.contiguous(), weight, ends);
}

at::Tensor fp8_linear_prequantized(const at::Tensor& x, const at::Tensor& weight,
                                   const at::Tensor& scale_inv) {
  if (weight.scalar_type() != at::kFloat8_e4m3fn)
    throw Error("fp8_linear_prequantized: weight must be float8_e4m3fn, got " +
                std::string(c10::toString(weight.scalar_type())));
  return Fp8LinearFunction::apply(x, weight, scale_inv);
}

}  // namespace ponder::model
