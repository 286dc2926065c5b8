// A dense BF16 linear without bias through a chosen GEMM (cuBLAS, cuBLASLt, or the grouped wgmma
// kernels with one group): what bench_kernels dense_decode compares on the decode step's shapes.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace ponder::kernels {

enum class DenseGemm { kCublas, kCublasLt, kWgmma, kWgmmaLarge };
std::string dense_gemm_name(DenseGemm gemm);

// True when dense_gemm can run `gemm` on x [rows, k] and w [n, k]: cuBLAS and cuBLASLt on any
// CUDA tensors; the wgmma kernels where grouped_gemm_supported holds for w as one group.
bool dense_gemm_supported(const at::Tensor& x, const at::Tensor& w, DenseGemm gemm);
// x [rows, k] times w [n, k]^T -> [rows, n] through `gemm` (cuBLAS and cuBLASLt via at::linear,
// cuBLASLt by preferring it for this call only). Throws ponder::Error when not supported.
at::Tensor dense_gemm(const at::Tensor& x, const at::Tensor& w, DenseGemm gemm);

}  // namespace ponder::kernels
