// Rollout throughput: generated tokens/s of ponder's RolloutEngine against HF transformers
// `generate` on the same random-init model directory, same prompts, greedy, same max_new_tokens
// (EOS ignored), both FP32 on the CPU with the same intra-op thread count, in one invocation.
// Usage: bench_rollout [THREADS] [REPS] [MODEL]  (MODEL: run only the models whose name starts with
// it; PONDER_PYTHON picks the interpreter with transformers)
#include <ATen/Parallel.h>
#include <fmt/core.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "bench/common/host.h"
#include "bench/rollout/prompts.h"
#include "core/error.h"
#include "core/json_file.h"
#include "engine/rollout_engine.h"
#include "model/init_model.h"

namespace {

namespace fs = std::filesystem;
using ponder::bench::Ids;
using ponder::engine::Request;

struct Workload {
  std::int64_t batch, prompt_len, new_tokens;
};

const std::vector<Workload> kWorkloads = {
    {1, 32, 128}, {8, 32, 128}, {32, 32, 128}, {1, 256, 256}, {8, 256, 256}};

struct ModelCase {
  std::string name;
  nlohmann::json config;
};

std::vector<ModelCase> model_cases() {
  auto small = ponder::model::preset_config("tiny-llama");
  small.update({{"vocab_size", 32000},
                {"hidden_size", 512},
                {"intermediate_size", 1408},
                {"num_hidden_layers", 8},
                {"num_attention_heads", 8},
                {"num_key_value_heads", 4}});
  return {
      {"tiny-mla (DeepSeek-V3 MLA+MoE, 4 layers, h 128)", ponder::model::preset_config("tiny-mla")},
      {"tiny-llama (2 layers, h 128)", ponder::model::preset_config("tiny-llama")},
      {"small-llama (8 layers, h 512, vocab 32000)", small}};
}

// Runs the HF baseline on every workload; returns its JSON (seconds and ids per workload).
nlohmann::json run_hf(const fs::path& model_dir, const std::vector<Ids>& prompts, int threads,
                      int reps) {
  nlohmann::json workloads = nlohmann::json::array();
  for (std::size_t i = 0; i < kWorkloads.size(); ++i)
    workloads.push_back({{"prompts", prompts[i]}, {"new_tokens", kWorkloads[i].new_tokens}});
  std::ofstream(model_dir / "workloads.json") << workloads.dump();
  const char* env = std::getenv("PONDER_PYTHON");
  const std::string python = env && *env ? env : PONDER_DEFAULT_PYTHON;
  const std::string command =
      fmt::format("{} {}/bench/rollout/hf_generate.py {} {} {} {} {} 2>/dev/null", python,
                  PONDER_SOURCE_DIR, model_dir.string(), (model_dir / "workloads.json").string(),
                  (model_dir / "hf.json").string(), threads, reps);
  if (std::system(command.c_str()) != 0)
    throw ponder::Error("bench_rollout: the HF baseline failed: " + command);
  return ponder::read_json_file(model_dir / "hf.json");
}

struct PonderRun {
  double seconds = std::numeric_limits<double>::infinity(), cpu_seconds = 0;
  Ids ids;
};

// User + system CPU time of this process (all threads).
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

PonderRun run_ponder(ponder::model::CausalLM& lm, const Workload& w, const Ids& prompts, int reps) {
  const std::int64_t blocks_per_seq = (w.prompt_len + w.new_tokens + 63) / 64;
  ponder::engine::RolloutEngine engine(
      lm, nullptr, {.num_blocks = w.batch * blocks_per_seq + 1, .show_progress = false});
  std::vector<Request> requests;
  for (const auto& p : prompts)
    requests.push_back({p, 1, {.temperature = 0, .max_tokens = w.new_tokens, .ignore_eos = true}});
  PonderRun best;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds();
    const auto completions = engine.generate(requests);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    if (took.count() >= best.seconds) continue;
    best = {took.count(), cpu_seconds() - cpu_start, {}};
    for (const auto& c : completions) best.ids.push_back(c.ids);
  }
  return best;
}

void bench_model(const ModelCase& m, const fs::path& dir, int threads, int reps) {
  ponder::model::init_model(m.config, dir, {.seed = 1});
  auto lm = ponder::model::load_causal_lm(dir, at::kCPU, at::kFloat);
  std::vector<Ids> prompts;
  for (const auto& w : kWorkloads)
    prompts.push_back(ponder::bench::make_prompts(w.batch, w.prompt_len, lm->config().vocab_size,
                                                  7 + prompts.size()));
  const nlohmann::json hf = run_hf(dir, prompts, threads, reps);
  run_ponder(*lm, {1, 32, 4}, {prompts[0][0]}, 1);  // warm-up
  fmt::print("\n{}  [HF {}]\n", m.name, hf["versions"].dump());
  fmt::print("{:>20} | {:^26} | {:^26} |\n", "", "tokens/s (wall)", "tokens/CPU-s");
  fmt::print("{:>5} {:>6} {:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6} | {}\n", "batch", "prompt",
             "new", "HF", "ponder", "ratio", "HF", "ponder", "ratio", "same tokens as HF");
  for (std::size_t i = 0; i < kWorkloads.size(); ++i) {
    const Workload& w = kWorkloads[i];
    const PonderRun ours = run_ponder(*lm, w, prompts[i], reps);
    const Ids theirs = hf["workloads"][i]["ids"].get<Ids>();
    std::size_t same = 0;
    for (std::size_t s = 0; s < theirs.size(); ++s) same += ours.ids[s] == theirs[s];
    const double tokens = static_cast<double>(w.batch * w.new_tokens);
    const auto& h = hf["workloads"][i];
    const double hf_wall = tokens / h["seconds"].get<double>(), our_wall = tokens / ours.seconds;
    const double hf_cpu = tokens / h["cpu_seconds"].get<double>();
    const double our_cpu = tokens / ours.cpu_seconds;
    fmt::print(
        "{:>5} {:>6} {:>6} | {:>9.1f} {:>9.1f} {:>5.2f}x | {:>9.1f} {:>9.1f} {:>5.2f}x | {}/{}\n",
        w.batch, w.prompt_len, w.new_tokens, hf_wall, our_wall, our_wall / hf_wall, hf_cpu, our_cpu,
        our_cpu / hf_cpu, same, theirs.size());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 2;
  at::set_num_threads(threads);
  fmt::print("device: {}\n", ponder::bench::cpu_description());
  fmt::print(
      "FP32, {} intra-op thread(s) on both sides, best of {} runs each; tokens/s = generated "
      "tokens / wall time of the whole generate call (prefill included); tokens/CPU-s = generated "
      "tokens / process CPU time (user + system) of that call\n",
      threads, reps);
  const fs::path root =
      fs::temp_directory_path() / ("ponder_bench_rollout_" + std::to_string(getpid()));
  try {
    for (const auto& m : model_cases())
      if (argc <= 3 || m.name.starts_with(argv[3]))
        bench_model(m, root / m.name.substr(0, m.name.find(' ')), threads, reps);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_rollout: {}\n", e.what());
    fs::remove_all(root);
    return 1;
  }
  fs::remove_all(root);
  fmt::print("\ndevice at the end: {}\n", ponder::bench::cpu_description());
  return 0;
}
