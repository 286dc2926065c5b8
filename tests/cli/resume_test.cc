// Kill-and-resume: a training run SIGKILLed at a random moment after its first checkpoint and
// continued with `ponder train --resume` ends bit-identical to an uninterrupted run, on-policy and
// with one-step off-policy generation (whose pending batch the resume regenerates).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "store/run_store.h"
#include "tests/common/test_util.h"

extern char** environ;

namespace ponder {
namespace {

const std::vector<std::string> kRecipe = {
    "--set", "steps=8", "--set", "checkpoint_every=2", "--set", "eval_every=4", "--set",
    "sft.steps=40", "--set", "sft.batch_size=8", "--set", "data.eval_size=6", "--set", "eval.n=2",
    "--set", "rollout.prompts_per_step=3", "--set", "rollout.n=4", "--set", "rollout.max_tokens=16",
    // the length penalty varies within every group, so every step updates the policy
    "--set",
    R"(rewards=[{"name": "math"}, {"name": "overlong", "options": {"max_tokens": 16, "buffer": 14}}])"};

pid_t spawn_train(const std::filesystem::path& run_dir, const std::filesystem::path& log,
                  int off_policy_steps) {
  std::vector<std::string> args = {
      PONDER_BINARY, "train",
      "--set",       "run_dir=" + run_dir.string(),
      "--set",       "rollout.off_policy_steps=" + std::to_string(off_policy_steps)};
  args.insert(args.end(), kRecipe.begin(), kRecipe.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, PONDER_BINARY, &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Everything a run logged except wall-clock timings (time/*, */seconds, *tokens_per_s).
std::vector<std::string> logged(const std::filesystem::path& run_dir) {
  store::RunStore store(run_dir);
  std::vector<std::string> rows;
  for (const auto& m : store.metrics())
    if (!m.name.starts_with("time/") && !m.name.ends_with("tokens_per_s") &&
        !m.name.ends_with("/seconds"))
      rows.push_back(std::to_string(m.step) + " " + m.name + " " + std::to_string(m.value));
  for (const auto& r : store.rollouts())
    rows.push_back(std::to_string(r.step) + " " + r.split + " " + r.completion + " " +
                   std::to_string(r.reward));
  std::sort(rows.begin(), rows.end());
  return rows;
}

class Resume : public testing::TestWithParam<int> {};

TEST_P(Resume, KilledRunResumesToTheSameFinalState) {
  testing_util::ScratchDir dir("resume");
  const auto straight = dir / "straight", killed = dir / "killed";
  const pid_t reference = spawn_train(straight, dir / "straight.log", GetParam());
  int status = 0;
  ASSERT_EQ(waitpid(reference, &status, 0), reference);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(dir / "straight.log");

  const pid_t victim = spawn_train(killed, dir / "killed.log", GetParam());
  const auto first = killed / "checkpoints" / "step-2" / "trainer_state.json";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!std::filesystem::exists(first) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::random_device entropy;
  const int delay_ms = std::uniform_int_distribution<int>(0, 400)(entropy);
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  ASSERT_EQ(waitpid(victim, &status, 0), victim);
  ASSERT_TRUE(WIFSIGNALED(status))
      << "the run finished before the kill; " << slurp(dir / "killed.log");
  ASSERT_FALSE(std::filesystem::exists(killed / "checkpoints" / "step-8"))
      << "killed " << delay_ms << " ms after the first checkpoint, too late to test anything";

  const std::string resumed = testing_util::run_checked(
      std::string(PONDER_BINARY) + " train --resume " + killed.string() + " 2>&1");
  EXPECT_NE(resumed.find("resuming from " + (killed / "checkpoints").string()), std::string::npos)
      << resumed;
  store::RunStore reference_store(straight);
  int updates_after_resume_point = 0;
  for (const auto& m : reference_store.metrics())
    updates_after_resume_point += m.name == "train/grad_norm" && m.step > 2 && m.value > 0;
  EXPECT_EQ(updates_after_resume_point, 6) << "the policy must change in every step";
  const auto last = std::filesystem::path("checkpoints") / "step-8";
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(slurp(straight / last / file) == slurp(killed / last / file))
        << file << " differs (killed " << delay_ms << " ms after the first checkpoint)";
  EXPECT_EQ(logged(straight), logged(killed)) << "killed " << delay_ms << " ms after step 2";
}

INSTANTIATE_TEST_SUITE_P(OffPolicySteps, Resume, testing::Values(0, 1));

}  // namespace
}  // namespace ponder
