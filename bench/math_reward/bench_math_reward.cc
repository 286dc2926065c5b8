// Math reward throughput: pairs/s of ponder's math reward (answer extraction + equivalence) against
// math-verify (parse + verify) on the same (gold, completion) pairs, both single-threaded, in one
// invocation: the pairs and math-verify's timing come from build_agreement_pairs.py, run first.
// Usage: bench_math_reward [MIN_SECONDS]   (PONDER_PYTHON picks the interpreter with math-verify)
#include <fmt/core.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "core/json_file.h"
#include "core/thread_pool.h"
#include "datasets/task.h"
#include "rewards/math_rewards.h"

namespace {

using ponder::rewards::Sample;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Scores every sample `rounds` times on `threads` threads; returns pairs per second.
double pairs_per_second(const ponder::rewards::Reward& reward, const std::vector<Sample>& samples,
                        std::size_t threads, double min_seconds, double& passed) {
  std::size_t scored = 0;
  const auto start = Clock::now();
  ponder::ThreadPool pool(threads);
  while (scored == 0 || seconds_since(start) < min_seconds) {
    std::vector<std::future<double>> chunks;
    const std::size_t chunk = (samples.size() + threads - 1) / threads;
    for (std::size_t begin = 0; begin < samples.size(); begin += chunk)
      chunks.push_back(pool.submit([&, begin] {
        double sum = 0;
        for (std::size_t i = begin; i < std::min(samples.size(), begin + chunk); ++i)
          sum += reward.score(samples[i]).value;
        return sum;
      }));
    passed = 0;
    for (auto& c : chunks) passed += c.get();
    scored += samples.size();
  }
  return static_cast<double>(scored) / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  const double min_seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const char* env = std::getenv("PONDER_PYTHON");
  const std::string python = env && *env ? env : PONDER_DEFAULT_PYTHON;
  const auto pairs = std::filesystem::temp_directory_path() / "ponder_bench_math_pairs.jsonl";
  const std::string command = python + " " + PONDER_SOURCE_DIR +
                              "/tests/rewards_math/build_agreement_pairs.py " +
                              ponder::datasets::data_root().string() + " " + pairs.string();
  fmt::print("math-verify baseline: {}\n", command);
  std::fflush(stdout);
  if (std::system(command.c_str()) != 0) {
    fmt::print(stderr, "bench_math_reward: the math-verify baseline failed\n");
    return 1;
  }
  std::vector<Sample> samples;
  double mv_seconds = 0, mv_passed = 0;
  ponder::for_each_jsonl(pairs, [&](const nlohmann::json& p, std::size_t) {
    if (p.contains("summary")) {
      mv_seconds = p["summary"]["math_verify_seconds"];
      return;
    }
    mv_passed += p["math_verify"].get<bool>() ? 1 : 0;
    samples.push_back({.completion = p["completion"], .reference = {{"answer", p["gold"]}}});
  });
  std::filesystem::remove(pairs);
  ponder::rewards::RewardRegistry registry;
  ponder::rewards::register_math_rewards(registry);
  const auto math = registry.create("math", nlohmann::json::object());
  double passed = 0, passed_pool = 0;
  const double one = pairs_per_second(*math, samples, 1, min_seconds, passed);
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const double all = pairs_per_second(*math, samples, cores, min_seconds, passed_pool);
  const double mv = static_cast<double>(samples.size()) / mv_seconds;
  fmt::print("{} pairs (math-verify accepts {}, ponder {})\n", samples.size(), mv_passed, passed);
  fmt::print("math-verify (1 thread):   {:>10.1f} pairs/s\n", mv);
  fmt::print("ponder math (1 thread):   {:>10.1f} pairs/s\n", one);
  fmt::print("ponder math ({} threads):  {:>10.1f} pairs/s\n", cores, all);
  fmt::print("ratio ponder/math-verify: {:.1f}x single-threaded (goal >= 50x)\n", one / mv);
  return 0;
}
