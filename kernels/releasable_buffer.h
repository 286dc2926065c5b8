// Device memory that can be given back while idle and taken again at the same address (vLLM's
// sleep/wake for the KV cache): CUDA graphs recorded over it stay valid across a release.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace ponder::kernels {

// `bytes` zeroed bytes on `device`. On a GPU the address range stays reserved for the buffer's
// life (CUDA virtual memory) and only its physical pages are unmapped and freed by release(), so
// restore() maps fresh pages at the same address; on the CPU the memory is freed and allocated
// again (no graphs there to keep valid).
class ReleasableBuffer {
 public:
  ReleasableBuffer(std::int64_t bytes, const at::Device& device);
  ~ReleasableBuffer();
  ReleasableBuffer(const ReleasableBuffer&) = delete;
  ReleasableBuffer& operator=(const ReleasableBuffer&) = delete;

  // The bytes as a uint8 tensor [bytes]; views of it must be dropped before release().
  const at::Tensor& bytes() const { return tensor_; }
  bool released() const { return !tensor_.defined(); }
  // Frees the memory (contents lost); no-op while released.
  void release();
  // Takes the memory back, zeroed, at the address it had (GPU); no-op while held. A GPU whose
  // free memory is short first gets the caching allocator's unused blocks back.
  void restore();

 private:
  void map();
  std::int64_t size_;  // the request, and on a GPU rounded up to the allocation granularity
  at::Device device_;
  std::uint64_t address_ = 0;   // reserved range (GPU)
  std::uint64_t physical_ = 0;  // mapped pages' handle while held (GPU)
  at::Tensor tensor_;
};

}  // namespace ponder::kernels
