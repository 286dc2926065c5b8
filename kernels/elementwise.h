// Small fused elementwise ops of the transformer: SwiGLU, rotary embeddings (tables from
// model::Rotary, default or YaRN) and MLA's cache-row write (latent norm + key RoPE + scatter).
// ATen references (any device, autograd) and CUDA kernels used for CUDA tensors outside autograd.
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

// The MLA cache rows of a step written into the pages [..., lora + rope] (flattened to rows):
// row slots[t] = [rms_norm(kv_a[t, :lora], weight, eps), interleaved RoPE of kv_a[t, lora:] by
// cos/sin [T, rope / 2]], from the projection kv_a [T, lora + rope] (any row stride) in the
// pages' dtype; rms_norm, rope and the page scatter fused in one launch on the GPU.
void mla_cache_write_reference(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                               const at::Tensor& cos, const at::Tensor& sin,
                               const at::Tensor& slots, double eps);
void mla_cache_write(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                     const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& slots,
                     double eps);
void mla_cache_write_cuda(at::Tensor& pages, const at::Tensor& kv_a, const at::Tensor& weight,
                          const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& slots,
                          double eps);

}  // namespace ponder::kernels
