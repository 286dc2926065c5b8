// Sandbox semantics on ordinary programs: outputs, stdin, exit codes and signals, the
// compile step, measured resources, and the pool's ordering.
#include "sandbox/sandbox.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "sandbox/cli_run.h"
#include "sandbox/languages.h"
#include "sandbox/pool.h"

namespace ponder::sandbox {
namespace {

TEST(Sandbox, PythonSeesStdinAndReportsExitCode) {
  Sandbox sandbox;
  RunResult r = sandbox.run({.language = "python",
                             .source = "import sys\n"
                                       "data = sys.stdin.read()\n"
                                       "print(data.upper(), end='')\n"
                                       "print('err', file=sys.stderr)\n"
                                       "sys.exit(7)\n",
                             .stdin_data = "hello\nworld\n"},
                            {});
  EXPECT_EQ(r.stdout_data, "HELLO\nWORLD\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.ok());
  EXPECT_GT(r.cpu_ms, 0);
  EXPECT_GT(r.max_rss_kb, 1000);
  EXPECT_GE(r.wall_ms, r.cpu_ms * 0.5);
}

TEST(Sandbox, LargeStdinDoesNotDeadlock) {
  Sandbox sandbox;
  std::string input(8 << 20, 'a');
  RunResult r = sandbox.run({.language = "python",
                             .source = "import sys\nprint(len(sys.stdin.read()))\n",
                             .stdin_data = input},
                            {});
  EXPECT_EQ(r.stdout_data, std::to_string(input.size()) + "\n");
}

TEST(Sandbox, SignalDeathIsReported) {
  Sandbox sandbox;
  RunResult r = sandbox.run(
      {.language = "python", .source = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"},
      {});
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.signal, SIGSEGV);
  EXPECT_FALSE(r.timed_out);
}

TEST(Sandbox, MemoryIsMeasured) {
  Sandbox sandbox;
  RunResult r = sandbox.run(
      {.language = "python",
       .source = "x = bytearray(200 * 1024 * 1024)\nx[::4096] = b'1' * len(x[::4096])\n"},
      {.memory_mb = 512});
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_GT(r.max_rss_kb, 200 * 1024);
  EXPECT_LT(r.max_rss_kb, 300 * 1024);
}

TEST(Sandbox, CppCompilesAndRunsWithStdin) {
  Sandbox sandbox;
  RunResult r = sandbox.run({.language = "c++",
                             .source = "#include <iostream>\n#include <vector>\n"
                                       "int main(){long n,s=0;std::vector<long> v;"
                                       "while(std::cin>>n) v.push_back(n);"
                                       "for(long x:v) s+=x; std::cout<<s<<\"\\n\";}\n",
                             .stdin_data = "1 2 3 4\n"},
                            {});
  EXPECT_EQ(r.stage, "run");
  EXPECT_EQ(r.stdout_data, "10\n") << r.stderr_data;
  EXPECT_TRUE(r.ok());
}

TEST(Sandbox, CCompileErrorIsReportedAsCompileStage) {
  Sandbox sandbox;
  RunResult r = sandbox.run({.language = "c", .source = "int main() { return undefined; }\n"}, {});
  EXPECT_EQ(r.stage, "compile");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("undefined"), std::string::npos) << r.stderr_data;
}

TEST(Sandbox, PreparedBinaryRunsManyInputs) {
  Sandbox sandbox;
  auto prepared =
      sandbox.prepare({.language = "c",
                       .source = "#include <stdio.h>\nint main(){int a,b;scanf(\"%d %d\",&a,&b);"
                                 "printf(\"%d\\n\",a*b);}\n"});
  ASSERT_TRUE(prepared.ok) << prepared.compile_failure.stderr_data;
  for (int a = 1; a <= 4; ++a) {
    RunResult r = sandbox.run_prepared(prepared, std::to_string(a) + " 7\n", {});
    EXPECT_EQ(r.stdout_data, std::to_string(a * 7) + "\n");
  }
}

TEST(Sandbox, UnknownLanguageAndBadCommandThrow) {
  Sandbox sandbox;
  EXPECT_THROW(sandbox.run({.language = "cobol", .source = ""}, {}), Error);
  EXPECT_THROW(sandbox.run_command({.argv = {"python3"}}, {}), Error);
  EXPECT_THROW(sandbox.run_command({.argv = {"/usr/bin/true"}, .files = {{"../x", ""}}}, {}),
               Error);
}

TEST(Sandbox, LanguageTableResolvesAliases) {
  EXPECT_EQ(language("PY").name, "python");
  EXPECT_EQ(language("c++").name, "cpp");
  EXPECT_EQ(find_language("rust"), nullptr);
}

TEST(SandboxPool, ResultsComeBackInRequestOrder) {
  Sandbox sandbox;
  SandboxPool pool(sandbox, 2, 2);
  std::vector<RunRequest> requests;
  for (int i = 0; i < 12; ++i) {
    // Earlier requests sleep longer, so completion order is the reverse of request order.
    requests.push_back(
        {.id = static_cast<std::uint64_t>(100 + i),
         .program = {.language = "python",
                     .source = "import time\ntime.sleep(" + std::to_string((12 - i) * 0.01) +
                               ")\nprint(" + std::to_string(i) + ")\n"}});
  }
  requests.push_back({.id = 999, .program = {.language = "cobol"}});
  std::vector<RunResponse> responses = pool.run_all(requests);
  ASSERT_EQ(responses.size(), requests.size());
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(responses[i].id, requests[i].id);
    EXPECT_EQ(responses[i].result.stdout_data, std::to_string(i) + "\n");
    EXPECT_TRUE(responses[i].error.empty());
  }
  EXPECT_EQ(responses.back().id, 999u);
  EXPECT_NE(responses.back().error.find("unknown language"), std::string::npos);
}

TEST(Sandbox, JsonCarriesClippedOutputsAndReplacesInvalidUtf8) {
  RunResult r;
  r.stdout_data = std::string(100, 'x');
  r.stderr_data = "bad \xff byte";
  nlohmann::json j = to_json(r, 10);
  EXPECT_EQ(j["stdout"].get<std::string>().substr(0, 10), std::string(10, 'x'));
  EXPECT_NE(j["stdout"].get<std::string>().find("90 more bytes"), std::string::npos);
  EXPECT_NO_THROW(j.dump());
  EXPECT_EQ(j["exit_code"], -1);
}

TEST(SandboxCommand, PrintsOutputsAndResultAndReturnsTheExitCode) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("ponder-sandbox-cli-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "prog.py") << "import sys\nprint(input() * 2)\nsys.exit(3)\n";
  std::ofstream(dir / "in.txt") << "ab\n";
  std::ofstream(dir / "loop.py") << "while True: pass\n";
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  int code = run_sandbox_command({.file = (dir / "prog.py").string(),
                                  .language = "python",
                                  .stdin_file = (dir / "in.txt").string()});
  std::string out = ::testing::internal::GetCapturedStdout();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 3);
  EXPECT_EQ(out, "abab\n");
  nlohmann::json summary = nlohmann::json::parse(err);
  EXPECT_EQ(summary["exit_code"], 3);
  EXPECT_EQ(summary["timed_out"], false);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(run_sandbox_command(
                {.file = (dir / "loop.py").string(), .language = "py", .time_limit_s = 1}),
            124);
  ::testing::internal::GetCapturedStderr();
  EXPECT_THROW(run_sandbox_command({.file = (dir / "missing.py").string(), .language = "py"}),
               Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ponder::sandbox
