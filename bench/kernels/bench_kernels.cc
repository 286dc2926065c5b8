// Times each CUDA kernel against the ATen path it replaces on the current GPU (CUDA events, median
// of repeats after warm-up) and prints achieved bandwidth against a device-to-device copy.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <fmt/core.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "kernels/rms_norm.h"

namespace ponder::kernels {
namespace {

void check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// Median milliseconds of `fn` over `reps` timed runs after `warmup` untimed ones.
double median_ms(const std::function<void()>& fn, int warmup = 3, int reps = 20) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    check(cudaEventRecord(start, stream), "record");
    fn();
    check(cudaEventRecord(stop, stream), "record");
    check(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    times.push_back(ms);
  }
  check(cudaGetLastError(), "kernel");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Device-to-device copy of 4 GiB; bytes read plus bytes written per second.
double copy_bandwidth_gbs() {
  const std::int64_t bytes = std::int64_t{4} << 30;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kByte);
  at::Tensor src = at::randint(0, 255, {bytes}, opts), dst = at::empty({bytes}, opts);
  const double ms = median_ms([&] { dst.copy_(src); });
  return 2.0 * bytes / ms / 1e6;
}

void bench_rms_norm(double copy_gbs) {
  for (const auto dtype : {at::kBFloat16, at::kFloat})
    for (const std::int64_t cols : {2048, 7168}) {
      const std::int64_t rows = (std::int64_t{1} << 28) / cols;  // 256M elements
      const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
      const at::Tensor x = at::randn({rows, cols}, opts), w = at::randn({cols}, opts);
      const double aten = median_ms([&] { rms_norm_reference(x, w, 1e-6); });
      const double fused = median_ms([&] { rms_norm_cuda(x, w, 1e-6); });
      const double gbs = 2.0 * x.nbytes() / fused / 1e6;
      fmt::print("rms_norm {:>9} [{}, {}]  aten {:8.3f} ms  kernel {:8.3f} ms  x{:5.2f}  {:6.0f} GB/s"
                 "  {:.2f} of copy\n",
                 c10::toString(dtype), rows, cols, aten, fused, aten / fused, gbs, gbs / copy_gbs);
    }
}

}  // namespace
}  // namespace ponder::kernels

int main(int argc, char** argv) {
  using namespace ponder::kernels;
  if (!at::hasCUDA()) {
    fmt::print("bench_kernels: no CUDA device, nothing to time\n");
    return 0;
  }
  const std::vector<std::string> only(argv + 1, argv + argc);
  auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  const double copy_gbs = copy_bandwidth_gbs();
  fmt::print("device {} ({} SMs, {} MB L2); device-to-device copy {:.0f} GB/s (read + write)\n",
             prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbs);
  if (wanted("rms_norm")) bench_rms_norm(copy_gbs);
  return 0;
}
