// End-to-end tests of the `ponder` binary: exit codes, error format, and a tiny training run
// that exercises every stage (SFT, rollouts, rewards, update, eval, store, report).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>

#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder {
namespace {

const auto run = testing_util::run_ponder;

TEST(Cli, VersionAndHelp) {
  const auto version = run("version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("libtorch 2.11.0"), std::string::npos) << version.output;
  EXPECT_NE(run("--help").output.find("train"), std::string::npos);
}

TEST(Cli, ErrorsArePrefixedAndExitNonZero) {
  testing_util::ScratchDir dir("cli_bad");
  std::ofstream(dir / "bad.json") << R"({"rollout": {"temprature": 0.5}})";
  const auto bad = run("recipe check " + (dir / "bad.json").string());
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("ponder: error: " + (dir / "bad.json").string() +
                            ": rollout.temprature: unknown key; did you mean 'temperature'?"),
            std::string::npos)
      << bad.output;
  EXPECT_EQ(run("report /nonexistent/run").exit_code, 1);
}

TEST(Cli, RecipeCheckPrintsTheResolvedRecipe) {
  for (const char* name : {"quickstart", "r1-zero-gsm8k", "dapo-math", "smollm2-gsm8k"}) {
    const auto r = run("recipe check " + std::string(PONDER_SOURCE_DIR) + "/recipes/" + name +
                       ".json --set seed=5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["seed"], 5);
    EXPECT_TRUE(j["grpo"].contains("clip_high"));
  }
}

// A recipe with a teacher is a distillation recipe: checked and resolved as one, errors named.
TEST(Cli, RecipeCheckResolvesDistillationRecipes) {
  const auto r = run("recipe check " + std::string(PONDER_SOURCE_DIR) +
                     "/recipes/distill-quickstart.json --set train.steps=7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["mode"], "logits");
  EXPECT_EQ(j["train"]["steps"], 7);
  EXPECT_EQ(j["student"]["preset"], "tiny-llama");
  const auto bad = run("recipe check " + std::string(PONDER_SOURCE_DIR) +
                       "/recipes/distill-quickstart.json --set mode=logit");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("mode: unsupported value 'logit' (expected one of: traces, logits, "
                            "on_policy)"),
            std::string::npos)
      << bad.output;
}

TEST(Cli, TinyTrainingRunWritesStoreAndReport) {
  testing_util::ScratchDir dir("cli_train");
  const auto r =
      run("train --set run_dir=" + (dir / "run").string() +
          " --set steps=2 --set sft.steps=3 --set sft.batch_size=4 --set data.eval_size=4"
          " --set rollout.prompts_per_step=2 --set rollout.n=2 --set rollout.max_tokens=8 --set "
          "eval_every=1 --set eval.n=2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("held-out accuracy:"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "report.html"));
  EXPECT_TRUE(
      std::filesystem::exists(dir / "run" / "checkpoints" / "step-2" / "model.safetensors"));
  store::RunStore store(dir / "run");
  std::set<std::string> names;
  for (const auto& m : store.metrics()) names.insert(m.name);
  for (const char* name : {"sft/loss", "reward/mean", "train/loss", "train/clip_fraction",
                           "train/entropy", "eval/accuracy", "rollout/logprob_mismatch_max"})
    EXPECT_TRUE(names.count(name)) << name;
  std::map<std::string, int> per_split;
  for (const auto& row : store.rollouts(1)) ++per_split[row.split];
  EXPECT_EQ(per_split["train"], 4);  // 2 prompts x 2 samples
  EXPECT_EQ(per_split["eval"], 8);   // the 4 held-out prompts x 2 samples, evaluated at step 1
}

// `ponder report A B -o PAGE` overlays the runs' metrics; one run keeps RUN_DIR/report.html.
TEST(Cli, ReportComparesRuns) {
  testing_util::ScratchDir dir("cli_compare");
  for (const char* name : {"a", "b"}) {
    store::RunStore store(dir / name);
    store.begin_run({.kind = "sft", .recipe = {{"run_dir", name}}, .seed = 1});
    store.log_metrics(1, {{"train/loss", 2.0}, {"eval/loss", 3.0}});
    store.flush();
  }
  const auto page = dir / "compare.html";
  const auto r =
      run("report " + (dir / "a").string() + " " + (dir / "b").string() + " -o " + page.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("report: " + page.string()), std::string::npos) << r.output;
  std::ifstream in(page);
  const std::string html((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("<title>ponder runs a vs b</title>"), std::string::npos);
  std::size_t lines = 0;
  for (auto pos = html.find("<polyline"); pos != std::string::npos;
       pos = html.find("<polyline", pos + 1))
    ++lines;
  EXPECT_EQ(lines, 4u);  // 2 metrics x 2 runs
  const auto one = run("report " + (dir / "a").string() + " -o " + page.string());
  EXPECT_EQ(one.exit_code, 1);
  EXPECT_NE(one.output.find("ponder: error: report: -o names the comparison page"),
            std::string::npos)
      << one.output;
  const auto missing = run("report " + (dir / "a").string() + " " + (dir / "none").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("none: not a run directory (no run.db)"), std::string::npos);
}

// The GPU-scale recipes, shrunk to one step of a tiny model: their data, chat formats, rewards and
// loss options all run.
TEST(Cli, ShippedGpuRecipesRunAStepOnATinyModel) {
  for (const char* name : {"r1-zero-gsm8k", "dapo-math"}) {
    testing_util::ScratchDir dir(std::string("cli_recipe_") + name);
    const auto r = run("train " + std::string(PONDER_SOURCE_DIR) + "/recipes/" + name +
                       ".json --set run_dir=" + (dir / "run").string() +
                       " --set model.path= --set model.preset=tiny-mla --set "
                       "model.tokenizer=tokenizers/minimind --set steps=1 --set eval_every=1 --set "
                       "data.eval_size=2 --set eval.n=2 --set rollout.prompts_per_step=2 --set "
                       "rollout.n=2 --set rollout.max_tokens=8 --set grpo.minibatches=2");
    ASSERT_EQ(r.exit_code, 0) << name << "\n" << r.output;
    store::RunStore store(dir / "run");
    const auto rows = store.rollouts(1);
    EXPECT_EQ(std::count_if(rows.begin(), rows.end(),
                            [](const auto& row) { return row.split == "eval"; }),
              4)
        << name;  // 2 held-out prompts x 2 samples
    EXPECT_TRUE(std::filesystem::exists(dir / "run" / "checkpoints" / "step-1" / "tokenizer.json"));
  }
}

// KL to the frozen post-SFT policy: exactly 0 at the first step (policy == reference), positive
// once the policy has moved (a length reward varies within every group, so every step updates).
TEST(Cli, KlToTheReferenceModelStartsAtZeroAndGrows) {
  testing_util::ScratchDir dir("cli_kl");
  const auto r = run("train --set run_dir=" + (dir / "run").string() +
                     " --set steps=3 --set sft.steps=40 --set sft.batch_size=8 --set "
                     "data.eval_size=2 --set eval.n=1 --set rollout.prompts_per_step=2 --set "
                     "rollout.n=4 --set rollout.max_tokens=16 --set grpo.kl_coef=0.1 --set "
                     "grpo.tis_cap=2 --set "
                     "'rewards=[{\"name\": \"overlong\", \"options\": {\"max_tokens\": 16, "
                     "\"buffer\": 14}}]'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  store::RunStore store(dir / "run");
  std::map<std::int64_t, double> kl;
  for (const auto& m : store.metrics())
    if (m.name == "train/kl") kl[m.step] = m.value;
  ASSERT_EQ(kl.size(), 3u);
  EXPECT_EQ(kl[1], 0.0);
  EXPECT_GT(kl[3], 0.0);
}

// Countdown (synthetic) and an eval task (MBPP, held out on HumanEval) as training data: each
// rollout is scored by its task's reward and the held-out accuracy by the eval task's own.
TEST(Cli, TrainsOnCountdownAndOnCodeTasks) {
  testing_util::ScratchDir dir("cli_tasks");
  const std::string common =
      " --set steps=1 --set sft.steps=2 --set sft.batch_size=2 --set data.eval_size=2 --set "
      "eval.n=1 --set rollout.prompts_per_step=2 --set rollout.n=2 --set rollout.max_tokens=8";
  for (const auto& [name, sets] : std::vector<std::pair<std::string, std::string>>{
           {"countdown", " --set data.task=countdown --set 'rewards=[{\"name\": \"countdown\"}]'"},
           {"code",
            " --set data.task=mbpp --set data.eval_task=humaneval --set sft.steps=0 --set "
            "'rewards=[{\"name\": \"code\", \"options\": {\"style\": \"mbpp\"}}]'"}}) {
    const auto r = run("train --set run_dir=" + (dir / name).string() + common + sets);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    store::RunStore store(dir / name);
    const auto rollouts = store.rollouts();
    ASSERT_FALSE(rollouts.empty());
    for (const auto& row : rollouts) {
      if (row.split != "train") continue;
      ASSERT_TRUE(row.reward_details.contains(name)) << row.reward_details.dump();
      // the countdown verdict explains itself; the code reward ran the tests in the sandbox
      EXPECT_TRUE(row.reward_details[name]["details"].contains(name == "code" ? "run" : "reason"))
          << row.reward_details.dump();
    }
    EXPECT_NE(r.output.find("held-out accuracy"), std::string::npos) << r.output;
  }
  const auto bad = run("recipe check " + std::string(PONDER_SOURCE_DIR) +
                       "/recipes/quickstart.json --set data.task=countdwn");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("data.task: unknown task 'countdwn'"), std::string::npos) << bad.output;
}

// DAPO dynamic sampling: an untrained model never gets the math right, so no group carries a
// signal; every step draws fresh prompts for max_sampling_rounds rounds, then skips the update.
TEST(Cli, DynamicSamplingRefillsThenSkipsStepsWithoutSignal) {
  testing_util::ScratchDir dir("cli_dynamic");
  const auto r = run("train --set run_dir=" + (dir / "run").string() +
                     " --set steps=2 --set sft.steps=0 --set data.eval_size=2 --set eval.n=1 "
                     "--set rollout.prompts_per_step=2 --set rollout.n=2 --set "
                     "rollout.max_tokens=4 --set grpo.dynamic_sampling=true --set "
                     "grpo.max_sampling_rounds=3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  store::RunStore store(dir / "run");
  std::map<std::string, std::vector<double>> values;
  for (const auto& m : store.metrics())
    if (m.step > 0) values[m.name].push_back(m.value);
  EXPECT_EQ(values["rollout/sampling_rounds"], (std::vector<double>{3, 3}));
  EXPECT_EQ(values["rollout/informative_groups"], (std::vector<double>{0, 0}));
  EXPECT_TRUE(values["train/grad_norm"].empty());
  EXPECT_EQ(store.rollouts(1).size(), 3u * 2 * 2);  // 3 rounds x 2 prompts x 2 samples
}

}  // namespace
}  // namespace ponder
