#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "dist/backends.h"

namespace ponder::dist::detail {

// The caller made the GPU of this rank's LOCAL_RANK current (ProcessGroup::local_device).
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const LaunchEnv& env) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = env.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options);
}

}  // namespace ponder::dist::detail
