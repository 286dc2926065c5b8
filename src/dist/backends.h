// Internal to src/dist: builds the c10d backend of a process group over an established store
// (Gloo here; NCCL in nccl_backend.cc, compiled only where CUDA and NCCL headers exist).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include "dist/process_group.h"

namespace ponder::dist::detail {

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const LaunchEnv& env);
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    const LaunchEnv& env);

}  // namespace ponder::dist::detail
