// Small fused elementwise ops of the transformer: SwiGLU and rotary embeddings (tables from
// model::Rotary, default or YaRN). ATen references (any device, autograd) and CUDA kernels used
// for CUDA tensors outside autograd.
#pragma once

#include <ATen/ATen.h>

#include "kernels/binding.h"

namespace ponder::kernels {

// silu(gate) * up in the inputs' dtype; gate and up [..., cols] (last dim contiguous for CUDA).
at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up);
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);
at::Tensor swiglu_cuda(const at::Tensor& gate, const at::Tensor& up);

// x [tokens, heads, dim] rotated by cos/sin [tokens, dim / 2] (FP32, cast to x's dtype first).
// interleaved = false: Llama rotate-half; true: DeepSeek pairs (2i, 2i+1), output
// [rotated evens, rotated odds].
at::Tensor rope_reference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                          bool interleaved);
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                bool interleaved);
at::Tensor rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     bool interleaved);
// rope_cuda writing into out [tokens, heads, dim] of x's dtype, last dim contiguous (e.g. the last
// columns of a wider buffer). launch_dependents_early: the kernel lets the next kernel on the
// stream start at once if that one was launched with programmatic stream serialisation (PDL);
// that kernel's griddepcontrol.wait still waits for this one to finish.
void rope_cuda_out(const at::Tensor& out, const at::Tensor& x, const at::Tensor& cos,
                   const at::Tensor& sin, bool interleaved, bool launch_dependents_early = false);

}  // namespace ponder::kernels
