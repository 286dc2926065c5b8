// The `ponder` command table: every sub-command and option is declared once here (CLI11),
// with its help text and default, so `--help` is generated from the same declarations.
#pragma once

namespace ponder::cli {

int run(int argc, char** argv);

}  // namespace ponder::cli
