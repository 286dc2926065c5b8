// Shared plumbing of the thin LibTorch bindings: when a call takes the CUDA kernel, dtype
// mapping, the current stream, and launch error reporting. Bindings only; kernels never see ATen.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <string>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

bool built_with_cuda();
// True when the CUDA kernel should run: ponder has CUDA, the tensors are on a GPU and nothing
// needs gradients (the kernels have no backward; training keeps the ATen reference).
bool use_kernel(std::initializer_list<at::Tensor> tensors);
// Throws ponder::Error naming `who` unless every tensor is on a CUDA device.
void require_cuda(const char* who, std::initializer_list<at::Tensor> tensors);
// float32, bfloat16 or float16; anything else throws ponder::Error naming `who`.
ElementType element_type(const at::Tensor& t, const char* who);
// The current CUDA stream of the current device as cudaStream_t (void* keeps CUDA out).
void* current_stream();
// Multiprocessors of the current CUDA device (sizing grids).
int multiprocessor_count();
// Compute capability of the current CUDA device as 10 major + minor (90 on H100/H200).
int compute_capability();
// Bytes of CUDA device `device` that new allocations can take: what the driver reports free plus
// what the caching allocator holds unused (sizing caches).
std::int64_t free_device_memory(const at::Device& device);
// Peak bytes the caching allocator had handed out on CUDA device `device` since the last
// reset_peak_allocated_bytes (memory outside it, such as ReleasableBuffer pages, is not counted).
std::int64_t peak_allocated_bytes(const at::Device& device);
void reset_peak_allocated_bytes(const at::Device& device);
// Bytes the caching allocator holds from the driver on CUDA device `device` now: in use, cached,
// and the CUDA graphs' private pools.
std::int64_t reserved_bytes(const at::Device& device);
// Throws ponder::Error naming `who` when a launcher returned a CUDA error code.
void check_launch(int rc, const char* who);
// Throws ponder::Error: `who` was called in a build without CUDA.
[[noreturn]] void no_cuda(const char* who);

}  // namespace ponder::kernels
