// ponder: the single binary. Sub-commands are declared in commands.cc; main only dispatches
// and turns exceptions into `ponder: error: ...` with a non-zero exit.
#include <fmt/core.h>

#include <exception>

#include "cli/commands.h"

int main(int argc, char** argv) {
  try {
    return ponder::cli::run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "ponder: error: {}\n", e.what());
    return 1;
  }
}
