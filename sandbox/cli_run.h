// `ponder sandbox run FILE --lang L`: runs one program exactly the way code rewards do, for
// debugging rewards and the sandbox itself.
#pragma once

#include <cstdint>
#include <string>

namespace ponder::sandbox {

struct SandboxRunOptions {
  std::string file;        // program source
  std::string language;    // a name or alias from languages.h
  std::string stdin_file;  // empty: no input
  double time_limit_s = 10.0;
  std::int64_t memory_limit_mb = 1024;
  bool unsafe_no_isolation = false;
};

// Writes the program's stdout to stdout, its stderr to stderr, then one JSON line with the
// RunResult (outputs left out) to stderr. Returns the program's exit code, 128 + signal when
// it was killed, 124 when it timed out; throws ponder::Error on unreadable files.
int run_sandbox_command(const SandboxRunOptions& options);

}  // namespace ponder::sandbox
