#include "store/run_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"

namespace ponder::store {
namespace {

std::filesystem::path fresh_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(RunStore, RoundTripsEveryRecordKind) {
  const auto dir = fresh_dir("ponder_store_rt");
  {
    RunStore store(dir);
    store.begin_run({.kind = "train", .recipe = {{"seed", 3}}, .seed = 3, .git_revision = "abc"});
    store.log_metrics(0, {{"reward/mean", 0.25}});
    store.log_metrics(1, {{"reward/mean", 0.5}});
    RolloutRecord r{.step = 1,
                    .split = "eval",
                    .group = 2,
                    .prompt = "p",
                    .completion = "c",
                    .reward = 1.0,
                    .reward_details = {{"why", "match"}},
                    .tokens = 5,
                    .finish_reason = "stop"};
    store.log_rollouts({&r, 1});
    store.log_checkpoint({.step = 1, .path = "checkpoints/step-1", .checksum = "ff"});
    store.flush();
  }
  RunStore reopened(dir);
  const auto info = reopened.run_info();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->recipe["seed"], 3);
  EXPECT_EQ(info->git_revision, "abc");
  const auto metrics = reopened.metrics();
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[1].step, 1);
  EXPECT_DOUBLE_EQ(metrics[1].value, 0.5);
  const auto rollouts = reopened.rollouts(1);
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].reward_details["why"], "match");
  EXPECT_EQ(rollouts[0].split, "eval");
  EXPECT_EQ(rollouts[0].finish_reason, "stop");
  EXPECT_EQ(reopened.checkpoints().at(0).path, "checkpoints/step-1");
  std::filesystem::remove_all(dir);
}

TEST(RunStore, RejectsFileThatIsNotADatabase) {
  const auto dir = fresh_dir("ponder_store_bad");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "run.db") << "this is not sqlite, just text that is long enough to matter\n";
  try {
    RunStore store(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run.db"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ponder::store
