#include "sandbox/sandbox.h"

#include <gtest/gtest.h>

namespace ponder::sandbox {
namespace {

TEST(Sandbox, RunsPython) {
  Sandbox sandbox;
  RunResult r = sandbox.run({.language = "python", .source = "import os,sys\nprint('hi', os.getuid(), os.getpid(), sorted(os.environ))\nprint(sys.stdin.read())\nprint(open('/proc/self/mountinfo').read())", .stdin_data = "in"}, {});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  std::cout << to_json(r, 10000).dump(2) << "\n";
}

}  // namespace
}  // namespace ponder::sandbox
