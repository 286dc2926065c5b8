#include "kernels/cuda_graph.h"

#include "kernels/binding.h"

#ifdef PONDER_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ponder::kernels {

#ifdef PONDER_WITH_CUDA
struct CudaGraph::Pool {
  at::cuda::MempoolId_t id = at::cuda::graph_pool_handle();
};
struct CudaGraph::Impl {
  at::cuda::CUDAGraph graph;
};
#else
struct CudaGraph::Pool {};
struct CudaGraph::Impl {};
#endif

std::shared_ptr<CudaGraph::Pool> CudaGraph::new_pool() {
#ifndef PONDER_WITH_CUDA
  no_cuda("CudaGraph::new_pool");
#endif
  return std::make_shared<Pool>();
}

std::int64_t CudaGraph::pool_bytes(const Pool& pool) {
#ifdef PONDER_WITH_CUDA
  std::int64_t bytes = 0;
  for (const auto& segment :
       c10::cuda::CUDACachingAllocator::snapshot({0, 0}, /*include_traces=*/false).segments)
    if (segment.owner_private_pool_id == pool.id)
      bytes += static_cast<std::int64_t>(segment.total_size);
  return bytes;
#else
  (void)pool;
  no_cuda("CudaGraph::pool_bytes");
#endif
}

void CudaGraph::free_pool(const Pool& pool) {
#ifdef PONDER_WITH_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache(pool.id);
#else
  (void)pool;
  no_cuda("CudaGraph::free_pool");
#endif
}

CudaGraph::CudaGraph() = default;
CudaGraph::~CudaGraph() = default;
CudaGraph::CudaGraph(CudaGraph&&) noexcept = default;
CudaGraph& CudaGraph::operator=(CudaGraph&&) noexcept = default;

void CudaGraph::capture(const std::function<void()>& work, const std::shared_ptr<Pool>& pool) {
#ifdef PONDER_WITH_CUDA
  const c10::cuda::CUDAStream main = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
  at::cuda::CUDAEvent ready;
  ready.record(main);
  ready.block(side);
  impl_ = std::make_unique<Impl>();
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    work();
    // thread-local: one-step off-policy generation records on its own thread while the trainer's
    // thread keeps launching and allocating
    impl_->graph.capture_begin(pool->id, cudaStreamCaptureModeThreadLocal);
    work();
    impl_->graph.capture_end();
  }
  at::cuda::CUDAEvent done;
  done.record(side);
  done.block(main);
#else
  (void)work, (void)pool;
  no_cuda("CudaGraph::capture");
#endif
}

void CudaGraph::replay() {
#ifdef PONDER_WITH_CUDA
  impl_->graph.replay();
#else
  no_cuda("CudaGraph::replay");
#endif
}

}  // namespace ponder::kernels
