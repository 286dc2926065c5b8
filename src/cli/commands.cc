#include "cli/commands.h"

#include <torch/version.h>
#include <ATen/Context.h>
#include <CLI/CLI.hpp>
#include <fmt/core.h>

namespace ponder::cli {
namespace {

void add_version(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print ponder, LibTorch and CUDA versions and GPUs");
  cmd->callback([] {
    fmt::print("ponder {}\n", PONDER_VERSION);
    fmt::print("libtorch {}\n", TORCH_VERSION);
    const bool cuda = at::hasCUDA();
    fmt::print("cuda {}\n", cuda ? "available" : "not available (CPU reference path)");
  });
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"ponder: reasoning RL post-training (GRPO, rewards, sandbox, distillation)", "ponder"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every sub-command");
  add_version(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}

}  // namespace ponder::cli
