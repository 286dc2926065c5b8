#include "kernels/side_stream.h"

#ifdef PONDER_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace ponder::kernels {

std::pair<at::Tensor, at::Tensor> run_beside(const std::function<at::Tensor()>& main,
                                             const std::function<at::Tensor()>& side,
                                             const at::Device& device) {
#ifdef PONDER_WITH_CUDA
  if (device.is_cuda()) {
    const c10::cuda::CUDAGuard on_device(device);
    const c10::cuda::CUDAStream main_stream = c10::cuda::getCurrentCUDAStream();
    const c10::cuda::CUDAStream side_stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/true);
    at::cuda::CUDAEvent inputs_ready, side_done;
    inputs_ready.record(main_stream);
    inputs_ready.block(side_stream);
    at::Tensor side_result;
    {
      const c10::cuda::CUDAStreamGuard on_side(side_stream);
      side_result = side();
    }
    at::Tensor main_result = main();
    side_done.record(side_stream);
    side_done.block(main_stream);
    // The side result's memory was allocated on the side stream: the allocator must not hand it
    // out there again before the main stream's reads of it are done.
    if (side_result.defined() && side_result.storage().data_ptr().get() != nullptr)
      c10::cuda::CUDACachingAllocator::recordStream(side_result.storage().data_ptr(), main_stream);
    return {std::move(main_result), std::move(side_result)};
  }
#else
  (void)device;
#endif
  at::Tensor main_result = main();
  return {std::move(main_result), side()};
}

}  // namespace ponder::kernels
