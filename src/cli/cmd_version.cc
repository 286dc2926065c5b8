#include <ATen/Context.h>
#include <fmt/core.h>
#include <torch/version.h>

#include "cli/commands.h"

namespace ponder::cli {

void add_version_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print ponder, LibTorch and CUDA versions and GPUs");
  cmd->callback([] {
    fmt::print("ponder {}\n", PONDER_VERSION);
    fmt::print("libtorch {}\n", TORCH_VERSION);
    if (at::hasCUDA())
      fmt::print("cuda: available, {} GPU(s) visible\n", at::getNumGPUs());
    else
      fmt::print("cuda: no GPU visible (CPU reference path)\n");
  });
}

}  // namespace ponder::cli
