// `ponder train` and `ponder sft` data parallel on CPU (Gloo): 2 ranks match 1 process on the same
// global batch (metrics, samples, final weights and optimizer moments within 1e-5 FP32), a
// checkpoint written by 2 ranks resumes on 1 rank (and one of 1 on 2) to the same final weights,
// and killing one rank makes the other exit with a clear error within the collective timeout.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/safetensors.h"
#include "store/run_store.h"
#include "tests/common/test_util.h"

extern char** environ;

namespace ponder {
namespace {

using testing_util::run_checked;

// Small GRPO run: odd prompt count (uneven shards), two minibatches (their boundary falls inside
// a rank's rows), dynamic sampling, a warm-up batch split across ranks; after the warm-up the
// responses vary in length, so the length penalty varies within groups and every step updates
// the policy. Summing gradients in another order (other shards, or just other thread counts)
// changes them by float rounding; with AdamW's default eps = 1e-8 that noise, normalised on
// entries whose gradient is nearly zero, moves weights by up to ~lr/3 (1e-4 here, measured
// between 1 and 2 OpenMP threads in one process). eps = 1e-6 keeps the update proportional
// to such tiny gradients, so a 1e-5 tolerance on the weights tests the gradients themselves.
std::string grpo_flags(const std::filesystem::path& run_dir) {
  return " --set run_dir=" + run_dir.string() +
         " --set steps=4 --set checkpoint_every=2 --set eval_every=2 --set sft.steps=40"
         " --set sft.batch_size=8 --set data.eval_size=5 --set eval.n=2 --set optim.eps=1e-6"
         " --set rollout.prompts_per_step=3 --set rollout.n=4 --set rollout.max_tokens=16"
         " --set grpo.minibatches=2 --set grpo.dynamic_sampling=true"
         " --set 'rewards=[{\"name\": \"math\"}, {\"name\": \"overlong\", \"options\": "
         "{\"max_tokens\": 16, \"buffer\": 14}}]'";
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool is_timing(const std::string& name) {
  return name.starts_with("time/") || name.ends_with("tokens_per_s") || name.ends_with("seconds");
}

// Every metric of a run except wall-clock timings, by "name@step".
std::map<std::string, double> metrics(const std::filesystem::path& run_dir) {
  std::map<std::string, double> out;
  for (const auto& m : store::RunStore(run_dir).metrics())
    if (!is_timing(m.name)) out[m.name + "@" + std::to_string(m.step)] = m.value;
  return out;
}

// Every sample a run logged (train and held-out), sorted.
std::vector<std::string> samples(const std::filesystem::path& run_dir) {
  std::vector<std::string> rows;
  for (const auto& r : store::RunStore(run_dir).rollouts())
    rows.push_back(std::to_string(r.step) + " " + r.split + " " + std::to_string(r.group) + " " +
                   r.completion + " " + std::to_string(r.reward));
  std::sort(rows.begin(), rows.end());
  return rows;
}

void expect_same_metrics(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto ma = metrics(a), mb = metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (const auto& [key, value] : ma) {
    ASSERT_TRUE(mb.contains(key)) << key;
    EXPECT_NEAR(value, mb.at(key), 1e-5 * std::max(1.0, std::abs(value))) << key;
  }
}

// Largest element-wise difference between two safetensors files with the same tensors.
double max_difference(const std::filesystem::path& a, const std::filesystem::path& b) {
  const model::SafetensorsFile fa(a), fb(b);
  EXPECT_EQ(fa.names(), fb.names());
  double worst = 0;
  for (const auto& name : fa.names()) {
    if (name.starts_with("rng.")) continue;
    const at::Tensor ta = fa.load(name, at::kDouble), tb = fb.load(name, at::kDouble);
    EXPECT_TRUE(ta.sizes().equals(tb.sizes())) << name;
    worst = std::max(worst, (ta - tb).abs().max().item<double>());
  }
  return worst;
}

class TrainDist : public testing::Test {
 protected:
  // The GRPO runs are shared by the tests below: one process, and two ranks.
  static void SetUpTestSuite() {
    dir_ = new testing_util::ScratchDir("train_dist");
    run_checked(std::string(PONDER_BINARY) + " train" + grpo_flags(*dir_ / "one") + " 2>&1");
    two_output_ = run_checked(std::string(PONDER_BINARY) + " train --nproc 2" +
                              grpo_flags(*dir_ / "two") + " 2>&1");
  }
  static void TearDownTestSuite() { delete dir_; }

  static testing_util::ScratchDir* dir_;
  static std::string two_output_;
};

testing_util::ScratchDir* TrainDist::dir_ = nullptr;
std::string TrainDist::two_output_;

TEST_F(TrainDist, GrpoOnTwoRanksMatchesOneProcess) {
  const auto one = *dir_ / "one", two = *dir_ / "two";
  expect_same_metrics(one, two);
  std::map<std::string, double> m = metrics(two);
  int updates = 0;
  for (int step = 1; step <= 4; ++step) updates += m["train/grad_norm@" + std::to_string(step)] > 0;
  EXPECT_EQ(updates, 4) << "every step must update the policy";
  EXPECT_EQ(samples(one), samples(two));
  const auto last = std::filesystem::path("checkpoints") / "step-4";
  const double weights =
      max_difference(one / last / "model.safetensors", two / last / "model.safetensors");
  const double moments =
      max_difference(one / last / "optimizer.safetensors", two / last / "optimizer.safetensors");
  const double moved = max_difference(two / "checkpoints" / "step-0" / "model.safetensors",
                                      two / last / "model.safetensors");
  std::cout << "final weights: max |2 ranks - 1 process| = " << weights
            << ", optimizer moments: " << moments << "; RL moved weights by up to " << moved
            << "\n";
  EXPECT_LT(weights, 1e-5);
  EXPECT_LT(moments, 1e-5);
  EXPECT_GT(moved, 100 * 1e-5) << "the RL steps must change the weights";
  // Rank 1 prints nothing: each line of rank 0 appears once.
  EXPECT_EQ(count(two_output_, "held-out accuracy before GRPO"), 1) << two_output_;
  EXPECT_EQ(count(two_output_, "report: "), 1) << two_output_;
  // the progress bar's final line (its periodic lines depend on timing)
  EXPECT_EQ(count(two_output_, "grpo: 4/4 step"), 1) << two_output_;
  // Rank 0 shows every rank's decode path and cache once: both ranks alike here, on one line.
  EXPECT_EQ(count(two_output_,
                  "ranks 0-1: cpu, MLA decode attention: ATen reference (Float query, "
                  "Float cache pages of 16 tokens); KV cache "),
            1)
      << two_output_;
}

// Copies RUN, drops its last checkpoint (step 4) and resumes the copy from step 2 with `nproc`
// ranks; the copy's final weights and moments must match the one-process run's.
void expect_resume_matches(const std::filesystem::path& run, const std::filesystem::path& copy,
                           int nproc, const std::filesystem::path& reference) {
  std::filesystem::copy(run, copy, std::filesystem::copy_options::recursive);
  const auto last = std::filesystem::path("checkpoints") / "step-4";
  std::filesystem::remove_all(copy / last);
  const std::string out =
      run_checked(std::string(PONDER_BINARY) + " train --nproc " + std::to_string(nproc) +
                  " --resume " + copy.string() + " 2>&1");
  EXPECT_NE(out.find("(step 2)"), std::string::npos) << out;
  EXPECT_LT(
      max_difference(reference / last / "model.safetensors", copy / last / "model.safetensors"),
      1e-5);
  EXPECT_LT(max_difference(reference / last / "optimizer.safetensors",
                           copy / last / "optimizer.safetensors"),
            1e-5);
  expect_same_metrics(reference, copy);
}

TEST_F(TrainDist, CheckpointsResumeOnAnotherNumberOfRanks) {
  expect_resume_matches(*dir_ / "two", *dir_ / "two_on_one", 1, *dir_ / "one");
  expect_resume_matches(*dir_ / "one", *dir_ / "one_on_two", 2, *dir_ / "one");
}

TEST(SftDist, TwoRanksMatchOneProcessAndResumeOnOne) {
  testing_util::ScratchDir dir("sft_dist");
  testing_util::write_addition_chats(dir / "chats.jsonl", 40);
  const nlohmann::json recipe = {
      {"epochs", 1},
      {"max_steps", 4},
      {"batch_tokens", 192},
      {"eval_every", 2},
      {"checkpoint_every", 2},
      {"model",
       {{"preset", "tiny-llama"},
        {"tokenizer", (testing_util::data_root() / "tokenizers" / "minimind").string()}}},
      {"data",
       {{"train_file", (dir / "chats.jsonl").string()},
        {"eval_fraction", 0.2},
        {"chat_format", "chatml"},
        {"max_seq_len", 48}}},
      {"optim", {{"lr", 3e-3}, {"warmup_steps", 1}, {"schedule", "cosine"}}}};
  std::ofstream(dir / "sft.json") << recipe.dump(2);
  const std::string sft = std::string(PONDER_BINARY) + " sft " + (dir / "sft.json").string();
  run_checked(sft + " --set run_dir=" + (dir / "one").string() + " 2>&1");
  const std::string out =
      run_checked(sft + " --nproc 2 --set run_dir=" + (dir / "two").string() + " 2>&1");
  EXPECT_EQ(count(out, "sft: 4 steps"), 1) << out;
  expect_same_metrics(dir / "one", dir / "two");
  const auto last = std::filesystem::path("checkpoints") / "step-4";
  EXPECT_LT(max_difference(dir / "one" / last / "model.safetensors",
                           dir / "two" / last / "model.safetensors"),
            1e-5);
  std::filesystem::remove_all(dir / "two" / last);
  run_checked(std::string(PONDER_BINARY) + " sft --resume " + (dir / "two").string() + " 2>&1");
  EXPECT_LT(max_difference(dir / "one" / last / "model.safetensors",
                           dir / "two" / last / "model.safetensors"),
            1e-5);
  EXPECT_LT(max_difference(dir / "one" / last / "optimizer.safetensors",
                           dir / "two" / last / "optimizer.safetensors"),
            1e-5);
}

// Starts rank `rank` of 2 of `ponder train` with torchrun's variables, output to `log`.
pid_t spawn_rank(int rank, int port, const std::filesystem::path& run_dir,
                 const std::filesystem::path& log) {
  std::vector<std::string> args = {
      "/bin/sh", "-c",
      "exec " + std::string(PONDER_BINARY) + " train" + grpo_flags(run_dir) + " --set steps=1000"};
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  for (const std::string& v : std::vector<std::string>{
           "RANK=" + std::to_string(rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
           "MASTER_PORT=" + std::to_string(port), "PONDER_DIST_TIMEOUT=30", "OMP_NUM_THREADS=1"})
    env.push_back(v);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  argv.push_back(nullptr);
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv.data(), envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

TEST(TrainDistFailure, KillingOneRankEndsTheOtherWithAClearError) {
  testing_util::ScratchDir dir("train_dist_kill");
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const pid_t rank0 = spawn_rank(0, port, dir / "run", dir / "rank0.log");
  const pid_t rank1 = spawn_rank(1, port, dir / "run", dir / "rank1.log");
  // Wait until the run is into its RL steps (the first checkpoint exists), then kill rank 1.
  const auto first = dir / "run" / "checkpoints" / "step-0" / "trainer_state.json";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!std::filesystem::exists(first) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(std::filesystem::exists(first)) << slurp(dir / "rank0.log");
  ASSERT_EQ(kill(rank1, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(rank1, &status, 0), rank1);
  const auto killed = std::chrono::steady_clock::now();
  deadline = killed + std::chrono::seconds(60);  // PONDER_DIST_TIMEOUT=30 plus slack
  pid_t done = 0;
  while ((done = waitpid(rank0, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (done == 0) {
    kill(rank0, SIGKILL);
    waitpid(rank0, &status, 0);
    FAIL() << "rank 0 still running 60 s after rank 1 died:\n" << slurp(dir / "rank0.log");
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const std::string log = slurp(dir / "rank0.log");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << log;
  EXPECT_NE(log.find("ponder: error: dist: rank 0/2: "), std::string::npos) << log;
  EXPECT_EQ(count(log, "ponder: error"), 1) << log;
  std::cout << "rank 0 exited " << seconds << " s after rank 1 was killed\n";
  EXPECT_EQ(slurp(dir / "rank1.log"), "") << "rank 1 must print nothing but errors";
}

}  // namespace
}  // namespace ponder
