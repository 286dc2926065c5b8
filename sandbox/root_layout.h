// The file system a sandboxed program sees: a fresh tmpfs root holding /work and /tmp, with
// read-only binds of the host paths that interpreters and compilers need, and nothing else.
#pragma once

#include <string>
#include <vector>

#include "sandbox/child_setup.h"

namespace ponder::sandbox::detail {

// Host directory the new root's tmpfs is mounted on (inside the private mount namespace only)
// before pivot_root makes it "/".
inline constexpr const char* kStagingRoot = "/tmp";
inline constexpr const char* kWorkDir = "/work";

// Mount steps building the new root under kStagingRoot, computed once from the host layout.
const std::vector<MountStep>& root_layout();

}  // namespace ponder::sandbox::detail
