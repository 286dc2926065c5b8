#include "kernels/releasable_buffer.h"

#include <string>

#include "core/error.h"
#include "kernels/binding.h"

#ifdef PONDER_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#endif

namespace ponder::kernels {
namespace {

#ifdef PONDER_WITH_CUDA
// The driver's virtual memory calls, looked up through the runtime (no link against libcuda).
struct Driver {
  decltype(&cuMemAddressReserve) reserve = nullptr;
  decltype(&cuMemAddressFree) free_range = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
};

template <class F>
void load(F& fn, const char* name) {
  void* address = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(name, &address, 12000, cudaEnableDefault, &found) !=
          cudaSuccess ||
      found != cudaDriverEntryPointSuccess)
    throw Error(std::string("ReleasableBuffer: the CUDA driver has no ") + name);
  fn = reinterpret_cast<F>(address);
}

const Driver& driver() {
  static const Driver d = [] {
    Driver d;
    load(d.reserve, "cuMemAddressReserve");
    load(d.free_range, "cuMemAddressFree");
    load(d.create, "cuMemCreate");
    load(d.release, "cuMemRelease");
    load(d.map, "cuMemMap");
    load(d.unmap, "cuMemUnmap");
    load(d.set_access, "cuMemSetAccess");
    load(d.granularity, "cuMemGetAllocationGranularity");
    return d;
  }();
  return d;
}

void check(CUresult rc, const char* call, std::int64_t bytes) {
  if (rc != CUDA_SUCCESS)
    throw Error(std::string("ReleasableBuffer: ") + call + " of " + std::to_string(bytes) +
                " bytes failed with CUDA driver error " + std::to_string(rc));
}

CUmemAllocationProp pinned_on(const at::Device& device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device.index();
  return prop;
}
#endif

}  // namespace

ReleasableBuffer::ReleasableBuffer(std::int64_t bytes, const at::Device& device)
    : size_(bytes), device_(device) {
#ifdef PONDER_WITH_CUDA
  if (device.is_cuda() && !device.has_index())
    device_ = at::Device(at::kCUDA, c10::cuda::current_device());
#endif
  if (bytes < 1) throw Error("ReleasableBuffer: " + std::to_string(bytes) + " bytes, expected > 0");
  if (device.is_cuda()) {
#ifdef PONDER_WITH_CUDA
    const c10::cuda::CUDAGuard on_device(device_);
    const CUmemAllocationProp prop = pinned_on(device_);
    std::size_t granularity = 0;
    check(driver().granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
          "cuMemGetAllocationGranularity", bytes);
    const auto g = static_cast<std::int64_t>(granularity);
    size_ = (bytes + g - 1) / g * g;
    CUdeviceptr range = 0;
    check(driver().reserve(&range, static_cast<std::size_t>(size_), 0, 0, 0), "cuMemAddressReserve",
          size_);
    address_ = range;
#else
    no_cuda("ReleasableBuffer");
#endif
  }
  restore();
}

ReleasableBuffer::~ReleasableBuffer() {
  try {
    release();
  } catch (const std::exception&) {  // the process is in trouble already; keep unwinding
  }
#ifdef PONDER_WITH_CUDA
  if (address_) driver().free_range(address_, static_cast<std::size_t>(size_));
#endif
}

void ReleasableBuffer::release() {
  if (released()) return;
  tensor_ = at::Tensor();
#ifdef PONDER_WITH_CUDA
  if (device_.is_cuda()) {
    const c10::cuda::CUDAGuard on_device(device_);
    c10::cuda::device_synchronize();  // queued kernels may still read or write the pages
    check(driver().unmap(address_, static_cast<std::size_t>(size_)), "cuMemUnmap", size_);
    check(driver().release(physical_), "cuMemRelease", size_);
    physical_ = 0;
  }
#endif
}

void ReleasableBuffer::restore() {
  if (!released()) return;
  if (!device_.is_cuda()) {
    tensor_ = at::zeros({size_}, at::TensorOptions(at::kByte).device(device_));
    return;
  }
  map();
  tensor_ = at::from_blob(reinterpret_cast<void*>(address_), {size_},
                          at::TensorOptions(at::kByte).device(device_));
  tensor_.zero_();
}

// Fresh physical pages mapped at the reserved range, readable and writable by the device.
void ReleasableBuffer::map() {
#ifdef PONDER_WITH_CUDA
  const c10::cuda::CUDAGuard on_device(device_);
  const CUmemAllocationProp prop = pinned_on(device_);
  const auto bytes = static_cast<std::size_t>(size_);
  CUmemGenericAllocationHandle handle = 0;
  CUresult rc = driver().create(&handle, bytes, &prop, 0);
  if (rc == CUDA_ERROR_OUT_OF_MEMORY) {  // the training step's blocks, cached by the allocator
    c10::cuda::CUDACachingAllocator::emptyCache();
    rc = driver().create(&handle, bytes, &prop, 0);
  }
  check(rc, "cuMemCreate", size_);
  rc = driver().map(address_, bytes, 0, handle, 0);
  if (rc != CUDA_SUCCESS) driver().release(handle);
  check(rc, "cuMemMap", size_);
  CUmemAccessDesc access{};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  check(driver().set_access(address_, bytes, &access, 1), "cuMemSetAccess", size_);
  physical_ = handle;
#endif
}

}  // namespace ponder::kernels
