// The decode step's dense BF16 linears (few rows, inference): which GEMM each shape runs on
// (cuBLAS, cuBLASLt, or the grouped wgmma kernels with one group), picked once per shape.
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
// The GEMM a BF16 problem of this shape runs on (from bench_kernels dense_decode on the H200);
// PONDER_DENSE_GEMM=cublas|cublaslt|wgmma|wgmma_large forces one wherever it is supported.
DenseGemm pick_dense_gemm(std::int64_t rows, std::int64_t n, std::int64_t k);
// at::linear(x, w) without bias for x [..., k]: BF16 CUDA tensors that need no gradient go
// through dense_gemm with the picked GEMM, everything else (CPU, training) through at::linear.
at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w);

}  // namespace ponder::kernels
