#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "dist/backends.h"

namespace ponder::dist::detail {

// Each rank drives the GPU of its LOCAL_RANK.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const LaunchEnv& env) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = env.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options);
}

}  // namespace ponder::dist::detail
