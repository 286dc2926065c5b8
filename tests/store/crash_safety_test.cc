#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "store/run_store.h"
#include "store/sqlite.h"

namespace ponder::store {
namespace {

// Starts the writer child, reads acknowledged steps until a random count, SIGKILLs it, and
// returns the last step the child reported as committed.
std::int64_t run_and_kill(const std::filesystem::path& dir, int steps_before_kill) {
  int pipe_fds[2];
  EXPECT_EQ(pipe(pipe_fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    execl(CRASH_WRITER, CRASH_WRITER, dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  FILE* in = fdopen(pipe_fds[0], "r");
  long long step = -1, last = -1;
  for (int i = 0; i < steps_before_kill && std::fscanf(in, "%lld", &step) == 1; ++i) last = step;
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  fclose(in);
  return last;
}

TEST(RunStoreCrashSafety, SigkillKeepsEveryCommittedStep) {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 6; ++trial) {
    const auto dir = std::filesystem::temp_directory_path() /
                     ("ponder_crash_" + std::to_string(getpid()) + "_" + std::to_string(trial));
    std::filesystem::remove_all(dir);
    const std::int64_t acknowledged = run_and_kill(dir, 1 + static_cast<int>(rng() % 60));
    ASSERT_GE(acknowledged, 0);

    Database db((dir / "run.db").string());
    Statement check(db, "PRAGMA integrity_check");
    ASSERT_TRUE(check.step());
    EXPECT_EQ(check.column_text(0), "ok");

    RunStore store(dir);
    std::map<std::int64_t, int> metrics_per_step, rollouts_per_step;
    for (const auto& m : store.metrics()) ++metrics_per_step[m.step];
    for (const auto& r : store.rollouts()) ++rollouts_per_step[r.step];
    for (std::int64_t step = 0; step <= acknowledged; ++step) {
      EXPECT_EQ(metrics_per_step[step], 2) << "trial " << trial << " step " << step;
      EXPECT_EQ(rollouts_per_step[step], 8) << "trial " << trial << " step " << step;
    }
    ASSERT_TRUE(store.run_info().has_value());
    EXPECT_EQ(store.run_info()->kind, "crash-test");
    std::filesystem::remove_all(dir);
  }
}

}  // namespace
}  // namespace ponder::store
