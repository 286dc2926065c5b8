// cuBLASLt called directly for the dense_decode bench: y [rows, n] = x [rows, k] w [n, k]^T in
// BF16 (FP32 sums) with each of the heuristic's first algorithms, to time them one by one.
#pragma once

#include <ATen/ATen.h>

#include <memory>

namespace ponder::bench {

class CublasLtGemm {
 public:
  // Plans x [rows, k] w [n, k]^T (BF16 CUDA, contiguous) with up to `algorithms` candidates from
  // the heuristic, given a `workspace_bytes` workspace.
  CublasLtGemm(const at::Tensor& x, const at::Tensor& w, int algorithms,
               std::int64_t workspace_bytes);
  ~CublasLtGemm();
  int algorithms() const;
  // Writes x w^T into y [rows, n] with candidate `index` on the current stream.
  void run(const at::Tensor& x, const at::Tensor& w, at::Tensor& y, int index) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ponder::bench
