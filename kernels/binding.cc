#include "kernels/binding.h"

#include <c10/core/GradMode.h>

#include "core/error.h"

#ifdef PONDER_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ponder::kernels {

bool built_with_cuda() {
#ifdef PONDER_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool use_kernel(std::initializer_list<at::Tensor> tensors) {
  if (!built_with_cuda()) return false;
  for (const at::Tensor& t : tensors) {
    if (!t.is_cuda()) return false;
    if (c10::GradMode::is_enabled() && t.requires_grad()) return false;
  }
  return true;
}

void require_cuda(const char* who, std::initializer_list<at::Tensor> tensors) {
  for (const at::Tensor& t : tensors)
    if (!t.is_cuda()) throw Error(std::string(who) + ": tensors must be on a CUDA device");
}

ElementType element_type(const at::Tensor& t, const char* who) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return ElementType::kFloat32;
    case at::kBFloat16:
      return ElementType::kBFloat16;
    case at::kHalf:
      return ElementType::kFloat16;
    default:
      throw Error(std::string(who) + ": unsupported dtype " + c10::toString(t.scalar_type()) +
                  " (float32, bfloat16, float16)");
  }
}

void* current_stream() {
#ifdef PONDER_WITH_CUDA
  return c10::cuda::getCurrentCUDAStream().stream();
#else
  no_cuda("current_stream");
#endif
}

int multiprocessor_count() {
#ifdef PONDER_WITH_CUDA
  return at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
#else
  no_cuda("multiprocessor_count");
#endif
}

int compute_capability() {
#ifdef PONDER_WITH_CUDA
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  return prop->major * 10 + prop->minor;
#else
  no_cuda("compute_capability");
#endif
}

std::int64_t free_device_memory(const at::Device& device) {
#ifdef PONDER_WITH_CUDA
  const c10::cuda::CUDAGuard on_device(device);
  std::size_t free = 0, total = 0;
  check_launch(cudaMemGetInfo(&free, &total), "free_device_memory");
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  constexpr auto kAll = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return static_cast<std::int64_t>(free) + stats.reserved_bytes[kAll].current -
         stats.allocated_bytes[kAll].current;
#else
  (void)device;
  no_cuda("free_device_memory");
#endif
}

std::int64_t peak_allocated_bytes(const at::Device& device) {
#ifdef PONDER_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  constexpr auto kAll = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return stats.allocated_bytes[kAll].peak;
#else
  (void)device;
  no_cuda("peak_allocated_bytes");
#endif
}

void reset_peak_allocated_bytes(const at::Device& device) {
#ifdef PONDER_WITH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#else
  (void)device;
  no_cuda("reset_peak_allocated_bytes");
#endif
}

std::int64_t reserved_bytes(const at::Device& device) {
#ifdef PONDER_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
  constexpr auto kAll = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return stats.reserved_bytes[kAll].current;
#else
  (void)device;
  no_cuda("reserved_bytes");
#endif
}

void check_launch(int rc, const char* who) {
  if (rc != 0)
    throw Error(std::string(who) + ": kernel launch failed with CUDA error " + std::to_string(rc));
}

void no_cuda(const char* who) {
  throw Error(std::string(who) +
              ": this ponder was built without CUDA (nvcc was not found at configure time)");
}

}  // namespace ponder::kernels
