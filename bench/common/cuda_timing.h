// GPU timing shared by the CUDA benchmarks: CUDA events on the current stream, median of timed
// repeats after untimed warm-up runs.
#pragma once

#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ponder::bench {

inline void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(rc));
}

// Median milliseconds of `fn` over `reps` timed runs after `warmup` untimed ones.
inline double median_ms(const std::function<void()>& fn, int warmup = 3, int reps = 20) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "event");
  check_cuda(cudaEventCreate(&stop), "event");
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<float> times;
  for (int i = 0; i < reps; ++i) {
    check_cuda(cudaEventRecord(start, stream), "record");
    fn();
    check_cuda(cudaEventRecord(stop, stream), "record");
    check_cuda(cudaEventSynchronize(stop), "sync");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    times.push_back(ms);
  }
  check_cuda(cudaGetLastError(), "kernel");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace ponder::bench
