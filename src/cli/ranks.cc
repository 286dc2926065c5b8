#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/launch.h"
#include "train/parallel.h"

namespace ponder::cli {
namespace {

// This command line without its --nproc option, started from this very binary.
std::vector<std::string> rank_command_line() {
  std::vector<std::string> args = {"/proc/self/exe"};
  const auto& all = command_line();
  for (std::size_t i = 1; i < all.size(); ++i) {
    if (all[i] == "--nproc") {
      ++i;
      continue;
    }
    if (!all[i].starts_with("--nproc=")) args.push_back(all[i]);
  }
  return args;
}

}  // namespace

void add_nproc_option(CLI::App& cmd, int& nproc) {
  cmd.add_option("--nproc", nproc,
                 "Train data parallel on N local processes (rank r on cuda:r when train.device is "
                 "cuda, NCCL between GPUs, Gloo on CPU); under torchrun leave it out: "
                 "RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT decide")
      ->check(CLI::PositiveNumber);
}

void run_ranks(int nproc, const std::function<void(dist::ProcessGroup&)>& body) {
  if (nproc > 1) {
    if (dist::launched_as_rank())
      throw Error("--nproc: this process is already one rank of WORLD_SIZE (torchrun); drop it");
    // Each rank gets its share of the cores, as torchrun does, unless the user chose.
    if (!std::getenv("OMP_NUM_THREADS"))
      setenv("OMP_NUM_THREADS",
             std::to_string(
                 std::max(1u, std::thread::hardware_concurrency() / static_cast<unsigned>(nproc)))
                 .c_str(),
             1);
    dist::run_local_ranks(rank_command_line(), nproc);
    return;
  }
  dist::ProcessGroup group(dist::launch_env());
  train::quiet_unless_main(group);
  try {
    body(group);
  } catch (...) {
    group.abort();
    throw;
  }
  group.shutdown();
}

}  // namespace ponder::cli
