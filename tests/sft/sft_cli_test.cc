// `ponder sft` end to end on CPU: a few steps of tiny-llama on synthetic chats write checkpoints
// (HF layout + tokenizer), metrics and a report; resuming from a checkpoint is bit-exact.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "store/run_store.h"
#include "tests/common/test_util.h"

namespace ponder {
namespace {

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(SftCli, TrainsCheckpointsReportsAndResumesExactly) {
  testing_util::ScratchDir dir("sft_cli");
  testing_util::write_addition_chats(dir / "chats.jsonl", 60);
  const nlohmann::json recipe = {
      {"run_dir", (dir / "run").string()},
      {"epochs", 2},
      {"max_steps", 8},
      {"batch_tokens", 256},
      {"eval_every", 4},
      {"checkpoint_every", 4},
      {"model",
       {{"preset", "tiny-llama"},
        {"tokenizer", (testing_util::data_root() / "tokenizers" / "minimind").string()}}},
      {"data",
       {{"train_file", (dir / "chats.jsonl").string()},
        {"eval_fraction", 0.1},
        {"chat_format", "chatml"},
        {"max_seq_len", 64}}},
      {"optim", {{"lr", 3e-3}, {"warmup_steps", 2}, {"schedule", "cosine"}}}};
  std::ofstream(dir / "sft.json") << recipe.dump(2);
  const std::string out = testing_util::run_checked(std::string(PONDER_BINARY) + " sft " +
                                                    (dir / "sft.json").string() + " 2>&1");
  EXPECT_NE(out.find("sft: 8 steps"), std::string::npos) << out;
  const auto run = dir / "run";
  for (const char* step : {"step-4", "step-8"})
    for (const char* file : {"config.json", "model.safetensors", "tokenizer.json"})
      EXPECT_TRUE(std::filesystem::exists(run / "checkpoints" / step / file)) << step << file;
  EXPECT_TRUE(std::filesystem::exists(run / "report.html"));
  std::map<std::string, std::map<std::int64_t, double>> metrics;
  {
    store::RunStore store(run);
    EXPECT_EQ(store.run_info()->kind, "sft");
    for (const auto& m : store.metrics()) metrics[m.name][m.step] = m.value;
  }
  ASSERT_EQ(metrics["train/loss"].size(), 8u);
  EXPECT_LT(metrics["train/loss"][8], metrics["train/loss"][1] - 1.0);
  EXPECT_EQ(metrics["eval/loss"].size(), 2u);
  EXPECT_LT(metrics["eval/loss"][8], metrics["eval/loss"][4]);
  EXPECT_NEAR(metrics["train/lr"][1], 1.5e-3, 1e-12);  // warmup: step 0 of 2 -> lr * 1/2

  const std::string final_weights = slurp(run / "checkpoints" / "step-8" / "model.safetensors");
  std::filesystem::remove_all(run / "checkpoints" / "step-8");
  testing_util::run_checked(std::string(PONDER_BINARY) + " sft --resume " + run.string() + " 2>&1");
  EXPECT_EQ(slurp(run / "checkpoints" / "step-8" / "model.safetensors"), final_weights);
  store::RunStore store(run);
  std::map<std::int64_t, double> resumed;
  for (const auto& m : store.metrics())
    if (m.name == "train/loss") resumed[m.step] = m.value;
  EXPECT_EQ(resumed, metrics["train/loss"]);
}

}  // namespace
}  // namespace ponder
