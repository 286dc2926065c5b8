// The seccomp-bpf deny list every sandboxed program runs under, compiled once with libseccomp
// into a BPF program that a forked child can install without allocating.
#pragma once

#include <linux/filter.h>

namespace ponder::sandbox::detail {

// Built on first use (thread-safe); throws ponder::Error if libseccomp fails.
const sock_fprog& seccomp_program();

}  // namespace ponder::sandbox::detail
