// Test-only CUDA kernel that lets the next kernel on the stream start at once (PDL) and writes its
// output late: a dependent kernel that reads that output before its griddepcontrol.wait sees it
// old.
#pragma once

#include <cstdint>

namespace ponder::kernels::testing {

// Copies `bytes` (a multiple of 16, 16-byte aligned) from src to dst on `stream` after spinning
// `delay_ns`, having triggered its dependents first. Returns the CUDA error code (0 on success).
int launch_late_copy(void* dst, const void* src, std::int64_t bytes, std::int64_t delay_ns,
                     void* stream);

}  // namespace ponder::kernels::testing
