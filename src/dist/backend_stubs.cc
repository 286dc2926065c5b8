// The backends this build lacks (see CMakeLists.txt) throw when a process group asks for them.
#include "core/error.h"
#include "dist/backends.h"

namespace ponder::dist::detail {

#ifndef PONDER_DIST_GLOO
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>&,
                                                    const LaunchEnv&) {
  throw Error(
      "dist: this ponder was built without Gloo (configure with -DPONDER_DIST=ON and "
      "libgloo-dev installed), so it trains in one process only");
}
#endif

#ifndef PONDER_DIST_NCCL
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>&,
                                                    const LaunchEnv&) {
  throw Error("dist: this ponder was built without NCCL (needs nvcc and nccl.h at configure time)");
}
#endif

}  // namespace ponder::dist::detail
