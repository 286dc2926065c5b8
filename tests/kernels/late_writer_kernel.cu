#include <cuda_runtime.h>

#include <cstdint>

#include "tests/kernels/late_writer_kernel.h"

namespace ponder::kernels::testing {
namespace {

__device__ std::uint64_t global_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void late_copy_kernel(uint4* dst, const uint4* src, std::int64_t n,
                                 std::int64_t delay_ns) {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  const std::uint64_t start = global_ns();
  while (global_ns() - start < static_cast<std::uint64_t>(delay_ns)) {
  }
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

int launch_late_copy(void* dst, const void* src, std::int64_t bytes, std::int64_t delay_ns,
                     void* stream) {
  late_copy_kernel<<<1, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<uint4*>(dst), static_cast<const uint4*>(src), bytes / 16, delay_ns);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels::testing
