#include "kernels/dense_gemm.h"

#include <ATen/Context.h>

#include "core/error.h"
#include "kernels/moe_gemm.h"

namespace ponder::kernels {
namespace {

GroupedKernel grouped_kernel(DenseGemm gemm) {
  return gemm == DenseGemm::kWgmmaLarge ? GroupedKernel::kWgmmaLarge : GroupedKernel::kWgmma;
}

// at::linear with cuBLASLt preferred for the duration of the call (the preference is global
// state: it is restored before returning).
at::Tensor linear_cublaslt(const at::Tensor& x, const at::Tensor& w) {
  at::Context& context = at::globalContext();
  const at::BlasBackend saved = context.blasPreferredBackend();
  context.setBlasPreferredBackend(at::BlasBackend::Cublaslt);
  try {
    at::Tensor y = at::linear(x, w);
    context.setBlasPreferredBackend(saved);
    return y;
  } catch (...) {
    context.setBlasPreferredBackend(saved);
    throw;
  }
}

}  // namespace

std::string dense_gemm_name(DenseGemm gemm) {
  switch (gemm) {
    case DenseGemm::kCublasLt:
      return "cublaslt";
    case DenseGemm::kWgmma:
      return "wgmma";
    case DenseGemm::kWgmmaLarge:
      return "wgmma_large";
    case DenseGemm::kCublas:
      break;
  }
  return "cublas";
}

bool dense_gemm_supported(const at::Tensor& x, const at::Tensor& w, DenseGemm gemm) {
  if (!x.is_cuda() || !w.is_cuda() || x.dim() != 2 || w.dim() != 2 || x.size(1) != w.size(1))
    return false;
  if (gemm == DenseGemm::kCublas || gemm == DenseGemm::kCublasLt) return true;
  return x.is_contiguous() && x.size(0) < (std::int64_t{1} << 31) &&
         grouped_gemm_supported(x, w.unsqueeze(0), grouped_kernel(gemm));
}

at::Tensor dense_gemm(const at::Tensor& x, const at::Tensor& w, DenseGemm gemm) {
  if (!dense_gemm_supported(x, w, gemm))
    throw Error("dense_gemm: " + dense_gemm_name(gemm) +
                " does not take these: expected CUDA x [rows, k] and w [n, k] (the wgmma "
                "kernels: bf16, both contiguous, k % 64 == 0, n % 128 == 0 or % 256 for the "
                "large one, compute capability 9.0)");
  switch (gemm) {
    case DenseGemm::kCublas:
      return at::linear(x, w);
    case DenseGemm::kCublasLt:
      return linear_cublaslt(x, w);
    case DenseGemm::kWgmma:
    case DenseGemm::kWgmmaLarge:
      break;
  }
  // One group holding every row: ends = [rows] (a fill kernel, so graph capture records it).
  const at::Tensor ends = at::full({1}, x.size(0), x.options().dtype(at::kInt));
  return grouped_gemm_cuda(x, w.unsqueeze(0), ends, false, grouped_kernel(gemm));
}

}  // namespace ponder::kernels
