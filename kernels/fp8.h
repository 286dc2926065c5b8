// FP8 E4M3 with DeepSeek-V3's fine-grained scaling: 1x128 tiles (activations, gradients) and
// 128x128 blocks (weights) with FP32 scales; ATen references, CUDA quantisers and the GEMM.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/binding.h"

namespace ponder::kernels {

inline constexpr std::int64_t kFp8Tile = 128;  // tile length along K; block side for weights
inline constexpr double kE4m3Max = 448.0;      // largest finite float8_e4m3fn

enum class Fp8Scaling {
  kTile1x128,    // scale [rows, ceil(cols / 128)]: one per 128 consecutive elements of a row
  kBlock128x128  // scale [ceil(rows / 128), ceil(cols / 128)]
};

// x ~= data * scale broadcast over its tile/block; scale = amax / 448 (a tile of zeros gets a tiny
// positive scale, so its data stays 0).
struct Fp8Tensor {
  at::Tensor data;   // [rows, cols] float8_e4m3fn
  at::Tensor scale;  // float32, shape as Fp8Scaling says
  Fp8Scaling scaling = Fp8Scaling::kTile1x128;
  // The transpose of a block-quantised matrix is block-quantised with the transposed scales
  // (blocks are square): the backward GEMM reuses the forward's weight quantisation.
  Fp8Tensor t() const;
};

// 128x128 blocks of each matrix of w together with the transposed FP8 data the input-gradient GEMM
// reads (K-major), from one read of w. data [batch, rows, cols], scale [batch, ceil(rows / 128),
// ceil(cols / 128)], data_t [batch, cols, rows]: each matrix's quantisation transposed (the blocks
// are square, so the transpose's scales are scale[b]^T).
struct Fp8Blocks {
  at::Tensor data, scale, data_t;
  Fp8Tensor matrix(std::int64_t b) const;      // {data[b], scale[b]}
  Fp8Tensor transposed(std::int64_t b) const;  // {data_t[b], scale[b]^T}
};

// ATen references (any device). x [rows, cols] in any float dtype; quantised in FP32 as
// clamp(x / scale, +-448) rounded to nearest even.
Fp8Tensor quantize_fp8_reference(const at::Tensor& x, Fp8Scaling scaling);
at::Tensor dequantize_fp8(const Fp8Tensor& q, at::ScalarType dtype);
// a [M, K] (tiles along K) times b [N, K] (tiles or blocks along K) transposed -> [M, N] with FP32
// accumulation: sum over k of a.data * a.scale * b.data * b.scale.
at::Tensor fp8_matmul_reference(const Fp8Tensor& a, const Fp8Tensor& b, at::ScalarType out_dtype);

// The CUDA quantiser (bit-exact with the reference) on CUDA tensors, else the reference.
Fp8Tensor quantize_fp8(const at::Tensor& x, Fp8Scaling scaling);
// quantize_fp8(x.t(), kTile1x128) without materialising x.t(): tiles run down x's columns
// (the weight-gradient GEMM's operands, whose K is the token dimension).
Fp8Tensor quantize_fp8_transposed(const at::Tensor& x);
// w [rows, cols] (batch 1) or [batch, rows, cols] (rows a multiple of 128 when batch > 1).
Fp8Blocks quantize_fp8_blocks_with_transpose(const at::Tensor& w);
// quantize_fp8_transposed of each row segment x[start_g : ends[g]] (start_0 = 0, start_g =
// ends[g - 1]; every end but the last a multiple of 128, the last = rows) in one pass: the
// weight-gradient operands of grouped GEMMs. Each result is contiguous; empty segments give
// [cols, 0] data.
std::vector<Fp8Tensor> quantize_fp8_transposed_segments(const at::Tensor& x,
                                                        const std::vector<std::int64_t>& ends);
// Block-scaled GEMM on the GPU (cuBLAS through torch._scaled_mm_v2, sm_90; any shape, padded to
// cuBLAS's multiples) for CUDA operands, else the reference.
// With `out` (contiguous [M, N] of out_dtype) the product is written there and returned.
at::Tensor fp8_matmul(const Fp8Tensor& a, const Fp8Tensor& b, at::ScalarType out_dtype,
                      const std::optional<at::Tensor>& out = std::nullopt);

// The device paths themselves (fail clearly without CUDA or on unsupported shapes).
Fp8Tensor quantize_fp8_cuda(const at::Tensor& x, Fp8Scaling scaling);
Fp8Tensor quantize_fp8_transposed_cuda(const at::Tensor& x);
Fp8Blocks quantize_fp8_blocks_with_transpose_cuda(const at::Tensor& w);
std::vector<Fp8Tensor> quantize_fp8_transposed_segments_cuda(const at::Tensor& x,
                                                             const std::vector<std::int64_t>& ends);
bool fp8_matmul_cuda_supported(const Fp8Tensor& a, const Fp8Tensor& b);
at::Tensor fp8_matmul_cuda(const Fp8Tensor& a, const Fp8Tensor& b, at::ScalarType out_dtype,
                           const std::optional<at::Tensor>& out = std::nullopt);

}  // namespace ponder::kernels
