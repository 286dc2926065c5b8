// Tokenizer throughput: encode MB/s and strings/s of ponder's byte-level BPE tokenizer against HF
// `tokenizers` on the same GSM8K, MATH and HumanEval texts, for the DeepSeek-V3 and GPT-2
// tokenizers, both single-threaded, in one invocation (HF's timing comes from hf_encode.py, run
// first; its encode_batch modes are listed too, labelled). Ids are checked equal to HF's.
// Usage: bench_tokenizer [MIN_SECONDS]   (PONDER_PYTHON picks the interpreter with tokenizers)
#include <fmt/core.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/common/host.h"
#include "core/error.h"
#include "core/json_file.h"
#include "datasets/task.h"
#include "model/tokenizer.h"

namespace {

namespace fs = std::filesystem;

struct Rate {
  double mb_per_second, strings_per_second;
};

Rate rate(double passes, double seconds, std::size_t bytes, std::size_t strings) {
  return {passes * static_cast<double>(bytes) / 1e6 / seconds,
          passes * static_cast<double>(strings) / seconds};
}

nlohmann::json run_hf(const fs::path& tok_dir, const fs::path& out, double min_seconds) {
  const char* env = std::getenv("PONDER_PYTHON");
  const std::string python = env && *env ? env : PONDER_DEFAULT_PYTHON;
  const std::string command = fmt::format(
      "{} {}/bench/tokenizer/hf_encode.py {} {} {} {}", python, PONDER_SOURCE_DIR, tok_dir.string(),
      ponder::datasets::data_root().string(), out.string(), min_seconds);
  if (std::system(command.c_str()) != 0)
    throw ponder::Error("bench_tokenizer: the HF baseline failed: " + command);
  return ponder::read_json_file(out);
}

// Encodes every text, repeated for at least min_seconds; counts texts whose ids differ from HF's.
Rate ponder_rate(const ponder::model::Tokenizer& tok, const std::vector<std::string>& texts,
                 const nlohmann::json& hf_ids, std::size_t bytes, double min_seconds,
                 std::size_t& mismatches) {
  mismatches = 0;
  for (std::size_t i = 0; i < texts.size(); ++i)
    mismatches += tok.encode(texts[i]) != hf_ids[i].get<std::vector<std::int64_t>>();
  std::size_t passes = 0;
  const auto start = std::chrono::steady_clock::now();
  std::chrono::duration<double> took{};
  while (passes == 0 || took.count() < min_seconds) {
    for (const auto& t : texts) tok.encode(t);
    ++passes;
    took = std::chrono::steady_clock::now() - start;
  }
  return rate(static_cast<double>(passes), took.count(), bytes, texts.size());
}

void bench_tokenizer(const std::string& name, double min_seconds) {
  const fs::path tok_dir = ponder::datasets::data_root() / "tokenizers" / name;
  const fs::path out =
      fs::temp_directory_path() / fmt::format("ponder_bench_tokenizer_{}_{}.json", name, getpid());
  const nlohmann::json hf = run_hf(tok_dir, out, min_seconds);
  fs::remove(out);
  const auto texts = hf["texts"].get<std::vector<std::string>>();
  std::size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  const auto tok = ponder::model::Tokenizer::from_directory(tok_dir);
  std::size_t mismatches = 0;
  const Rate ours = ponder_rate(tok, texts, hf["ids"], bytes, min_seconds, mismatches);
  fmt::print(
      "\n{}: {} texts, {:.2f} MB (GSM8K test[:1000] q+a, MATH test, HumanEval); ids differ "
      "from HF on {} texts\n",
      name, texts.size(), static_cast<double>(bytes) / 1e6, mismatches);
  fmt::print("  {:<54} {:>8} {:>12} {:>10}\n", "", "MB/s", "strings/s", "ponder/x");
  fmt::print("  {:<54} {:>8.2f} {:>12.0f} {:>10}\n", "ponder, one string at a time (1 thread)",
             ours.mb_per_second, ours.strings_per_second, "");
  for (const auto& t : hf["modes"]) {
    const Rate theirs =
        rate(t["passes"].get<double>(), t["seconds"].get<double>(), bytes, texts.size());
    fmt::print("  {:<54} {:>8.2f} {:>12.0f} {:>9.2f}x\n", "HF " + t["mode"].get<std::string>(),
               theirs.mb_per_second, theirs.strings_per_second,
               ours.mb_per_second / theirs.mb_per_second);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const double min_seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  fmt::print("device: {}\n", ponder::bench::cpu_description());
  try {
    for (const std::string name : {"deepseek-v3", "gpt2"}) bench_tokenizer(name, min_seconds);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_tokenizer: {}\n", e.what());
    return 1;
  }
  return 0;
}
