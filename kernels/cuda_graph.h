// CUDA graph capture and replay behind a header without CUDA types: the rollout engine records
// its decode step once per batch bucket and replays it, one launch instead of ~1,400.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

namespace ponder::kernels {

// One recorded CUDA graph on the current device. Graphs made from the same Pool share one
// private memory pool: replay them one at a time, never concurrently.
class CudaGraph {
 public:
  struct Pool;
  // A fresh pool for graphs that replay one after another.
  static std::shared_ptr<Pool> new_pool();
  // Bytes the pool holds from the driver (the caching allocator's segments owned by it): its
  // graphs' intermediate tensors, unavailable to anything else while it lives.
  static std::int64_t pool_bytes(const Pool& pool);
  // Gives the pool's memory back to the driver. Only once every graph recorded into it is
  // destroyed (until then nothing is freed); the allocator's other cached blocks stay.
  static void free_pool(const Pool& pool);

  CudaGraph();
  ~CudaGraph();
  CudaGraph(CudaGraph&&) noexcept;
  CudaGraph& operator=(CudaGraph&&) noexcept;

  // Runs `work` once eagerly on a side stream (lazy initialisation, allocator warm-up), then
  // records it: `work` must not synchronise with the host, and the tensors it reads and writes
  // must outlive the graph. Ordered after the work queued so far on the current stream.
  void capture(const std::function<void()>& work, const std::shared_ptr<Pool>& pool);
  // Launches the recording on the current stream.
  void replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ponder::kernels
