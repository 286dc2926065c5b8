#include "kernels/moe_gemm.h"

#include <cstdint>

#include "core/error.h"
#include "kernels/moe_gemm_kernel.h"

namespace ponder::kernels {

at::Tensor grouped_gemm_reference(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                                  bool swiglu) {
  const std::int64_t n = w.size(1);
  at::Tensor y = at::zeros({x.size(0), swiglu ? n / 2 : n}, x.options());
  const at::Tensor host_ends = ends.to(at::kCPU, at::kLong).contiguous();
  std::int64_t begin = 0;
  for (std::int64_t g = 0; g < w.size(0); ++g) {
    const std::int64_t end = host_ends.data_ptr<std::int64_t>()[g];
    if (end == begin) continue;
    // [rows of g, n] in FP32: exact products of the inputs, FP32 sums
    const at::Tensor out =
        at::mm(x.narrow(0, begin, end - begin).to(at::kFloat), w[g].to(at::kFloat).t());
    y.narrow(0, begin, end - begin)
        .copy_(swiglu ? at::silu(out.narrow(1, 0, n / 2)) * out.narrow(1, n / 2, n / 2) : out);
    begin = end;
  }
  return y;
}

#ifdef PONDER_WITH_CUDA
namespace {

int launch(const GroupedGemmParams& p, GroupedKernel kernel) {
  switch (kernel) {
    case GroupedKernel::kWgmma:
      return launch_grouped_gemm_wgmma(p, multiprocessor_count(), current_stream());
    case GroupedKernel::kWgmmaLarge:
      return launch_grouped_gemm_wgmma_large(p, multiprocessor_count(), current_stream());
    case GroupedKernel::kFewRows:
      break;
  }
  return launch_grouped_gemm(p, current_stream());
}

}  // namespace
#endif

bool grouped_gemm_supported(const at::Tensor& x, const at::Tensor& w, GroupedKernel kernel) {
  const bool tiled = use_kernel({x, w}) && x.scalar_type() == at::kBFloat16 &&
                     w.scalar_type() == at::kBFloat16 && x.dim() == 2 && w.dim() == 3 &&
                     w.is_contiguous() && x.size(1) == w.size(2) && w.size(2) % kGroupedK == 0 &&
                     w.size(1) % kGroupedN == 0;
  if (!tiled || kernel == GroupedKernel::kFewRows) return tiled;
  const auto aligned = [](const at::Tensor& t) {
    return reinterpret_cast<std::uintptr_t>(t.data_ptr()) % 16 == 0;
  };
  const bool large_tiles =
      w.size(2) > 0 && w.size(1) % kGroupedLargeN == 0 && w.size(0) <= kGroupedLargeMaxGroups;
  return compute_capability() == 90 && aligned(x) && aligned(w) &&
         (kernel != GroupedKernel::kWgmmaLarge || large_tiles);
}

at::Tensor grouped_gemm_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                             bool swiglu, GroupedKernel kernel) {
#ifdef PONDER_WITH_CUDA
  const char* who = "grouped_gemm_cuda";
  require_cuda(who, {x, w, ends});
  const at::Tensor rows = x.contiguous();
  if (!grouped_gemm_supported(rows, w, kernel))
    throw Error(
        "grouped_gemm_cuda: expected bf16 x [rows, k] and contiguous w [groups, n, k] with "
        "k % 64 == 0 and n % 128 == 0 (the wgmma kernels: on a compute capability 9.0 GPU, "
        "16-byte aligned; the large one: n % 256 == 0, k > 0, at most 1024 groups)");
  if (ends.dim() != 1 || ends.size(0) != w.size(0) || ends.scalar_type() != at::kInt)
    throw Error("grouped_gemm_cuda: ends must be an int32 [groups] tensor");
  const std::int64_t n = w.size(1);
  at::Tensor y = at::empty({x.size(0), swiglu ? n / 2 : n}, x.options());
  if (x.size(0) == 0) return y;
  const at::Tensor e = ends.contiguous();
  const GroupedGemmParams p{rows.data_ptr(),
                            w.data_ptr(),
                            e.data_ptr<std::int32_t>(),
                            y.data_ptr(),
                            static_cast<int>(w.size(0)),
                            static_cast<int>(n),
                            static_cast<int>(w.size(2)),
                            static_cast<int>(rows.size(0)),
                            swiglu};
  check_launch(launch(p, kernel), who);
  return y;
#else
  (void)x, (void)w, (void)ends, (void)swiglu, (void)kernel;
  no_cuda("grouped_gemm_cuda");
#endif
}

at::Tensor grouped_gemm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& ends,
                        bool swiglu, GroupedKernel kernel) {
  return grouped_gemm_supported(x, w, kernel) ? grouped_gemm_cuda(x, w, ends, swiglu, kernel)
                                              : grouped_gemm_reference(x, w, ends, swiglu);
}

}  // namespace ponder::kernels
