// `--nproc N`: runs one command as N local ranks on this machine with torchrun's environment
// contract, waits for them, and stops the others when one fails.
#pragma once

#include <string>
#include <vector>

namespace ponder::dist {

// Spawns `args` (args[0] is the program) `nproc` times with RANK, LOCAL_RANK, WORLD_SIZE,
// MASTER_ADDR=127.0.0.1 and MASTER_PORT (a free local port) set, each rank inheriting stdout and
// stderr. Returns when every rank has exited; when one fails, the rest get SIGTERM and the
// function throws ponder::Error naming the first failed rank and its exit status.
void run_local_ranks(const std::vector<std::string>& args, int nproc);

// True when this process was started as one rank of several (WORLD_SIZE > 1 in the environment).
bool launched_as_rank();

}  // namespace ponder::dist
