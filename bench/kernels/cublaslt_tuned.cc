#include "bench/kernels/cublaslt_tuned.h"

#include <c10/cuda/CUDAStream.h>
#include <cublasLt.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace ponder::bench {
namespace {

void check(cublasStatus_t rc, const char* what) {
  if (rc != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cublasLt ") + what + ": status " +
                             std::to_string(static_cast<int>(rc)));
}

}  // namespace

// Column-major view: y^T [n, rows] = (w as [k, n])^T (x as [k, rows]).
struct CublasLtGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> found;
  at::Tensor workspace;
};

CublasLtGemm::CublasLtGemm(const at::Tensor& x, const at::Tensor& w, int algorithms,
                           std::int64_t workspace_bytes)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  const auto rows = static_cast<std::uint64_t>(x.size(0)),
             n = static_cast<std::uint64_t>(w.size(0)), k = static_cast<std::uint64_t>(w.size(1));
  check(cublasLtCreate(&m.handle), "create");
  check(cublasLtMatmulDescCreate(&m.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  const cublasOperation_t transpose = CUBLAS_OP_T;
  check(cublasLtMatmulDescSetAttribute(m.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                       sizeof(transpose)),
        "transa");
  check(cublasLtMatrixLayoutCreate(&m.a, CUDA_R_16BF, k, n, static_cast<std::int64_t>(k)), "a");
  check(cublasLtMatrixLayoutCreate(&m.b, CUDA_R_16BF, k, rows, static_cast<std::int64_t>(k)), "b");
  check(cublasLtMatrixLayoutCreate(&m.c, CUDA_R_16BF, n, rows, static_cast<std::int64_t>(n)), "c");
  m.workspace = at::empty({workspace_bytes}, x.options().dtype(at::kByte));
  const auto bytes = static_cast<std::uint64_t>(workspace_bytes);
  check(cublasLtMatmulPreferenceCreate(&m.preference), "preference");
  check(cublasLtMatmulPreferenceSetAttribute(m.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &bytes, sizeof(bytes)),
        "workspace");
  m.found.resize(static_cast<std::size_t>(algorithms));
  int returned = 0;
  check(cublasLtMatmulAlgoGetHeuristic(m.handle, m.op, m.a, m.b, m.c, m.c, m.preference, algorithms,
                                       m.found.data(), &returned),
        "heuristic");
  m.found.resize(static_cast<std::size_t>(returned));
}

CublasLtGemm::~CublasLtGemm() {
  Impl& m = *impl_;
  cublasLtMatmulPreferenceDestroy(m.preference);
  cublasLtMatrixLayoutDestroy(m.c);
  cublasLtMatrixLayoutDestroy(m.b);
  cublasLtMatrixLayoutDestroy(m.a);
  cublasLtMatmulDescDestroy(m.op);
  cublasLtDestroy(m.handle);
}

int CublasLtGemm::algorithms() const { return static_cast<int>(impl_->found.size()); }

void CublasLtGemm::run(const at::Tensor& x, const at::Tensor& w, at::Tensor& y, int index) const {
  const Impl& m = *impl_;
  const float one = 1.0f, zero = 0.0f;
  const auto& algo = m.found.at(static_cast<std::size_t>(index));
  check(cublasLtMatmul(m.handle, m.op, &one, w.data_ptr(), m.a, x.data_ptr(), m.b, &zero,
                       y.data_ptr(), m.c, y.data_ptr(), m.c, &algo.algo, m.workspace.data_ptr(),
                       static_cast<std::size_t>(m.workspace.numel()),
                       c10::cuda::getCurrentCUDAStream().stream()),
        "matmul");
}

}  // namespace ponder::bench
