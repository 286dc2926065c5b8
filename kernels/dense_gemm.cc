#include "kernels/dense_gemm.h"

#include <ATen/Context.h>

#include <cstdlib>
#include <optional>

#include "core/error.h"
#include "kernels/binding.h"
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

std::optional<DenseGemm> forced_gemm() {
  static const std::optional<DenseGemm> forced = []() -> std::optional<DenseGemm> {
    const char* value = std::getenv("PONDER_DENSE_GEMM");
    if (value == nullptr || *value == '\0') return std::nullopt;
    for (const DenseGemm g :
         {DenseGemm::kCublas, DenseGemm::kCublasLt, DenseGemm::kWgmma, DenseGemm::kWgmmaLarge})
      if (dense_gemm_name(g) == value) return g;
    throw Error(std::string("PONDER_DENSE_GEMM: expected cublas, cublaslt, wgmma or wgmma_large, "
                            "got '") +
                value + "'");
  }();
  return forced;
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

DenseGemm pick_dense_gemm(std::int64_t rows, std::int64_t n, std::int64_t k) {
  (void)rows, (void)n, (void)k;
  if (const std::optional<DenseGemm> forced = forced_gemm()) return *forced;
  return DenseGemm::kCublas;
}

at::Tensor dense_linear(const at::Tensor& x, const at::Tensor& w) {
  if (!use_kernel({x, w}) || x.scalar_type() != at::kBFloat16 || w.scalar_type() != at::kBFloat16 ||
      x.dim() < 1 || w.dim() != 2)
    return at::linear(x, w);
  const at::Tensor rows = x.reshape({-1, x.size(-1)});
  DenseGemm gemm = pick_dense_gemm(rows.size(0), w.size(0), w.size(1));
  if (!dense_gemm_supported(rows, w, gemm)) gemm = DenseGemm::kCublas;
  std::vector<std::int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = w.size(0);
  return dense_gemm(rows, w, gemm).view(shape);
}

}  // namespace ponder::kernels
