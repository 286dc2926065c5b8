// Raw-pointer interface of the small fused elementwise CUDA kernels (no LibTorch here): SwiGLU,
// rotary embeddings (Llama rotate-half and DeepSeek interleaved layouts) and the MLA cache write.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

// out = silu(gate) * up, rounded to the element type after each op as ATen does.
struct SwigluParams {
  const void* gate = nullptr;  // [rows, cols], row stride gate_stride elements
  const void* up = nullptr;    // [rows, cols], row stride up_stride elements
  void* out = nullptr;         // [rows, cols] contiguous
  std::int64_t rows = 0, cols = 0, gate_stride = 0, up_stride = 0;
  ElementType type = ElementType::kFloat32;
};

int launch_swiglu(const SwigluParams& params, void* stream);

// Rotary embedding of x [tokens, heads, dim] with per-token tables cos/sin [tokens, dim / 2]
// (FP32, YaRN's attention factor already applied). Rotate-half pairs (i, i + dim/2); interleaved
// pairs (2i, 2i + 1) and writes [rotated evens, rotated odds]. launch_dependents: the kernel's
// first instruction lets a kernel launched after it with programmatic stream serialisation (PDL)
// start (that kernel's griddepcontrol.wait still waits for this one to finish).
struct RopeParams {
  const void* x = nullptr;  // last dim contiguous; token and head strides in elements
  const float* cos = nullptr;
  const float* sin = nullptr;
  void* out = nullptr;  // [tokens, heads, dim], last dim contiguous; strides in elements
  std::int64_t tokens = 0, heads = 0, dim = 0, token_stride = 0, head_stride = 0;
  std::int64_t out_token_stride = 0, out_head_stride = 0;
  bool interleaved = false;
  bool launch_dependents = false;
  ElementType type = ElementType::kFloat32;
};

int launch_rope(const RopeParams& params, void* stream);

// The MLA cache row of each token written into its page slot: [weight * rms_norm(latent),
// interleaved RoPE of the key] from kv_a = [latent (lora), key (rope)], rounded as the rms_norm and
// rope kernels round.
struct MlaCacheWriteParams {
  const void* kv_a = nullptr;           // [tokens, lora + rope], row stride `stride` elements
  const void* weight = nullptr;         // [lora]
  const float* cos = nullptr;           // [tokens, rope / 2]
  const float* sin = nullptr;           // [tokens, rope / 2]
  const std::int64_t* slots = nullptr;  // [tokens] row of `pages` receiving each token
  void* pages = nullptr;                // [rows, lora + rope] contiguous
  std::int64_t tokens = 0, lora = 0, rope = 0, stride = 0;
  float eps = 1e-6f;
  ElementType type = ElementType::kFloat32;
};

int launch_mla_cache_write(const MlaCacheWriteParams& params, void* stream);

}  // namespace ponder::kernels
