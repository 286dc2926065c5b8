// Rollout throughput on one GPU: a random-init DeepSeek-V2-Lite-shaped BF16 model, ponder's
// RolloutEngine against HF transformers `generate` on the same weights and prompts (greedy, EOS
// ignored) in the same run, the decode roofline (weights + KV bytes per step / device-to-device
// copy bandwidth measured here) and kernel-time profiles of one decode step and one prefill chunk.
// Usage: bench_rollout_gpu [BATCH PROMPT NEW HF_NEW [TRACE.json]]  (defaults 256 512 1024 64);
// PONDER_BENCH_NO_HF=1 skips the HF baseline; PONDER_BENCH_PREFILL_CHUNKS=2048,4096,... also
// times the prefill (the 1-token run) with engine steps of each size;
// PONDER_BENCH_EXPERT_GEMM=torch|few-rows|wgmma|large also runs the full workload and the step
// profile with the routed experts forced onto that GEMM (the main run takes
// model::pick_expert_gemm's automatic choice); PONDER_BENCH_KV_CACHE=fp8 runs every engine and
// step profile on the FP8 latent cache (default auto: BF16 pages). A/B runs of two binaries:
// PONDER_BENCH_MODEL_DIR=DIR draws the model into DIR once and reuses it (kept after the run);
// PONDER_BENCH_ROWS_ONLY=1 stops after the rollout rows and the roofline (no eager engine, no
// kernel profiles); PONDER_BENCH_LEAN=1 (with PONDER_BENCH_NO_HF=1) times only the 1-token and
// the full workload after a short warm-up, then profiles the decode step;
// PONDER_BENCH_ASYNC_AB=1 (with LEAN) instead times the full workload on a synchronous engine
// (async_decode off, A) and the default async one (B) in the order A B B A;
// PONDER_BENCH_PROFILE_ROWS=N prints N kernels per profile (default 18).
#include <fmt/core.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/rollout/prompts.h"
#include "core/error.h"
#include "core/json_file.h"
#include "engine/rollout_engine.h"
#include "kernels/cuda_graph.h"
#include "kernels/mla_decode.h"
#include "model/init_model.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using ponder::bench::Ids;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void sync(const at::Tensor& t) { t.reshape(-1)[0].item(); }

// Device-to-device copy of 2 GiB, bytes read + written per second (GB/s), mean of 20 copies.
double copy_bandwidth_gbs() {
  const std::int64_t bytes = std::int64_t{2} << 30;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kByte);
  at::Tensor src = at::randint(0, 255, {bytes}, opts), dst = at::empty_like(src);
  dst.copy_(src);
  sync(dst);
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) dst.copy_(src);
  sync(dst);
  return 2.0 * static_cast<double>(bytes) * 20 / since(start) / 1e9;
}

// HF generate on each of `new_tokens` with the same prompts (one timed run each after a warm-up).
nlohmann::json run_hf(const fs::path& dir, const Ids& prompts,
                      const std::vector<std::int64_t>& new_tokens) {
  nlohmann::json workloads = nlohmann::json::array();
  for (const auto n : new_tokens) workloads.push_back({{"prompts", prompts}, {"new_tokens", n}});
  std::ofstream(dir / "workloads.json") << workloads.dump();
  const char* env = std::getenv("PONDER_PYTHON");
  const std::string python = env && *env ? env : PONDER_DEFAULT_PYTHON;
  const char* source = std::getenv("PONDER_SOURCE_DIR");  // binaries built on another machine
  const std::string command =
      fmt::format("{} {}/bench/rollout/hf_generate.py {} {} {} 1 1 cuda bfloat16", python,
                  source && *source ? source : PONDER_SOURCE_DIR, dir.string(),
                  (dir / "workloads.json").string(), (dir / "hf.json").string());
  if (std::system(command.c_str()) != 0)
    throw ponder::Error("bench_rollout_gpu: the HF baseline failed: " + command);
  return ponder::read_json_file(dir / "hf.json");
}

struct Run {
  double seconds = 0;
  ponder::engine::GenerateMetrics metrics;
  Ids ids;
};

Run run_ponder(ponder::engine::RolloutEngine& engine, const Ids& prompts, std::int64_t new_tokens) {
  std::vector<ponder::engine::Request> requests;
  for (const auto& p : prompts)
    requests.push_back({p, 1, {.temperature = 0, .max_tokens = new_tokens, .ignore_eos = true}});
  const auto start = Clock::now();
  const auto completions = engine.generate(requests);
  Run run{since(start), engine.last_metrics(), {}};
  for (const auto& c : completions) run.ids.push_back(c.ids);
  return run;
}

// The cache format of every engine and step profile here: PONDER_BENCH_KV_CACHE (auto | fp8).
ponder::model::KvCacheDtype bench_cache_dtype() {
  const char* env = std::getenv("PONDER_BENCH_KV_CACHE");
  return ponder::model::parse_kv_cache_dtype(env ? env : "auto", "PONDER_BENCH_KV_CACHE");
}

// Pages [blocks, 64, ...] of `layout` on the GPU holding normal random entries (FP8 rows: those
// entries quantised).
at::Tensor random_pages(ponder::model::CausalLM& lm, const ponder::model::KvLayout& layout,
                        const std::vector<std::int64_t>& full) {
  const auto options = at::TensorOptions(at::kFloat).device(at::kCUDA);
  if (layout.dtype != at::kByte) return at::randn(full, options.dtype(layout.dtype));
  const ponder::model::ModelConfig& c = lm.config();
  const std::int64_t rows = full[0] * full[1];
  return ponder::kernels::mla_cache_quantize(at::randn({rows, c.kv_lora_rank}, options),
                                             at::randn({rows, c.qk_rope_head_dim}, options))
      .view(full);
}

// A cache of `blocks` pages of 64 tokens in `lm`'s layout for the bench's cache format: random
// entries (a decode step's context) or zeros (a prefill chunk writes its own).
ponder::model::PagedKvCache bench_cache(ponder::model::CausalLM& lm, std::int64_t blocks,
                                        bool random) {
  const auto layout = lm.kv_layout(bench_cache_dtype());
  ponder::model::PagedKvCache cache;
  cache.block_size = 64;
  for (std::int64_t l = 0; l < layout.num_layers; ++l) {
    std::vector<at::Tensor> tensors;
    for (const auto& shape : layout.per_token_shapes) {
      std::vector<std::int64_t> full = {blocks, 64};
      full.insert(full.end(), shape.begin(), shape.end());
      tensors.push_back(random
                            ? random_pages(lm, layout, full)
                            : at::zeros(full, at::TensorOptions(layout.dtype).device(at::kCUDA)));
    }
    cache.layers.push_back(std::move(tensors));
  }
  return cache;
}

// One decode step of `batch` sequences at context `ctx` on a synthetic cache: forward_paged,
// logits and argmax, as the engine runs it.
struct DecodeStep {
  ponder::model::PagedKvCache cache;
  ponder::model::StepBatch batch;

  DecodeStep(ponder::model::CausalLM& lm, std::int64_t sequences, std::int64_t ctx) {
    const std::int64_t per_seq = (ctx + 63) / 64, blocks = sequences * per_seq;
    cache = bench_cache(lm, blocks, true);
    const auto i64 = at::TensorOptions(at::kLong).device(at::kCUDA);
    const at::Tensor seq = at::arange(sequences, i64);
    batch = {at::randint(3, lm.config().vocab_size, {sequences}, i64),
             at::full({sequences}, ctx - 1, i64),
             seq * per_seq * 64 + ctx - 1,
             at::arange(sequences + 1, i64),
             at::full({sequences}, ctx, i64),
             at::arange(blocks, i64).view({sequences, per_seq})};
    batch.decode_only = true;  // as the engine's decode graphs run it
  }
  at::Tensor operator()(ponder::model::CausalLM& lm) {
    return lm.logits(lm.forward_paged(batch, cache)).argmax(-1);
  }
};

// Milliseconds per synced call of `step` (mean of 10 after one untimed call), then the GPU
// kernel time by kernel over 3 profiled calls (the top `rows` kernels) under `title`.
void print_profile(const std::string& title, const std::function<at::Tensor()>& step,
                   const std::string& trace_path, std::size_t rows = 18) {
  namespace profiler = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  sync(step());
  const auto start = Clock::now();
  for (int i = 0; i < 10; ++i) sync(step());
  const double step_ms = since(start) * 100;
  const ProfilerConfig config(ProfilerState::KINETO);
  const std::set<ActivityType> activities = {ActivityType::CPU, ActivityType::CUDA};
  profiler::prepareProfiler(config, activities);
  profiler::enableProfiler(config, activities);
  for (int i = 0; i < 3; ++i) sync(step());
  const auto result = profiler::disableProfiler();
  if (!trace_path.empty()) result->save(trace_path);
  std::map<std::string, std::pair<double, int>> by_kernel;  // name -> (ms, launches)
  double gpu_ms = 0;
  int launches = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    auto& [ms, count] = by_kernel[e.name().substr(0, 90)];
    ms += static_cast<double>(e.durationNs()) / 1e6 / 3;
    ++count;
    ++launches;
    gpu_ms += static_cast<double>(e.durationNs()) / 1e6 / 3;
  }
  std::vector<std::pair<std::string, std::pair<double, int>>> sorted(by_kernel.begin(),
                                                                     by_kernel.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  fmt::print("\n{}: {:.2f} ms per call (synced), GPU kernels {:.2f} ms in {} launches per call\n",
             title, step_ms, gpu_ms, launches / 3);
  if (const char* env = std::getenv("PONDER_BENCH_PROFILE_ROWS")) rows = std::stoul(env);
  for (std::size_t i = 0; i < std::min(sorted.size(), rows); ++i)
    fmt::print("  {:7.3f} ms {:5.1f}% {:5} launches  {}\n", sorted[i].second.first,
               100 * sorted[i].second.first / gpu_ms, sorted[i].second.second / 3, sorted[i].first);
}

// The decode step recorded as one CUDA graph (as the engine replays it): milliseconds per
// replay, mean of 20 synced replays after one.
double graph_step_ms(ponder::model::CausalLM& lm, DecodeStep& step) {
  ponder::kernels::CudaGraph graph;
  at::Tensor out;
  graph.capture([&] { out = step(lm); }, ponder::kernels::CudaGraph::new_pool());
  graph.replay();
  sync(out);
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) graph.replay();
  sync(out);
  return since(start) * 1e3 / 20;
}

void profile_decode(ponder::model::CausalLM& lm, std::int64_t sequences, std::int64_t ctx,
                    const std::string& trace_path) {
  DecodeStep step(lm, sequences, ctx);
  print_profile(
      fmt::format("decode step alone ({} sequences, context {}; forward + logits + "
                  "argmax)",
                  sequences, ctx),
      [&] { return step(lm); }, trace_path);
  fmt::print("  the same step as one CUDA graph: {:.2f} ms per replay\n", graph_step_ms(lm, step));
}

// One prefill chunk as the engine runs it: `sequences` fresh prompts of `prompt` tokens through
// forward_paged, then logits and argmax of each sequence's last token only.
struct PrefillStep {
  ponder::model::PagedKvCache cache;
  ponder::model::StepBatch batch;
  at::Tensor last;  // [sequences] row of each sequence's last token

  PrefillStep(ponder::model::CausalLM& lm, std::int64_t sequences, std::int64_t prompt) {
    const std::int64_t per_seq = (prompt + 63) / 64, blocks = sequences * per_seq;
    cache = bench_cache(lm, blocks, false);
    const auto i64 = at::TensorOptions(at::kLong).device(at::kCUDA);
    const at::Tensor pos = at::arange(prompt, i64).repeat({sequences});
    const at::Tensor seq = at::arange(sequences, i64).repeat_interleave(prompt);
    batch = {at::randint(3, lm.config().vocab_size, {sequences * prompt}, i64),
             pos,
             seq * per_seq * 64 + pos,
             at::arange(sequences + 1, i64) * prompt,
             at::full({sequences}, prompt, i64),
             at::arange(blocks, i64).view({sequences, per_seq})};
    last = at::arange(1, sequences + 1, i64) * prompt - 1;
  }
  at::Tensor operator()(ponder::model::CausalLM& lm) {
    return lm.logits(lm.forward_paged(batch, cache).index_select(0, last)).argmax(-1);
  }
};

// The kernel profile of one prefill chunk of `tokens` tokens (the bench's engine chunk), and
// its time with the routed experts on torch's grouped GEMM and on the large wgmma kernel.
void profile_prefill(ponder::model::CausalLM& lm, std::int64_t tokens, std::int64_t prompt) {
  using ponder::model::ExpertGemm;
  PrefillStep step(lm, std::max<std::int64_t>(1, tokens / prompt), prompt);
  print_profile(
      fmt::format("prefill chunk alone ({} x {}-token prompts; forward + last-token "
                  "logits + argmax)",
                  tokens / prompt, prompt),
      [&] { return step(lm); }, "", 24);
  for (const auto& [name, gemm] : {std::pair{"torch grouped", ExpertGemm::kTorchGrouped},
                                   {"wgmma large", ExpertGemm::kWgmmaLarge}}) {
    lm.set_expert_gemm(gemm);
    sync(step(lm));
    const auto start = Clock::now();
    for (int i = 0; i < 5; ++i) sync(step(lm));
    fmt::print("  prefill chunk with the routed experts on {}: {:.2f} ms\n", name,
               since(start) * 200);
  }
  lm.set_expert_gemm(ExpertGemm::kAuto);
}

double weight_bytes(ponder::model::CausalLM& lm) {
  double bytes = 0;  // every weight is read each step except the embedding (rows gathered)
  for (const auto& [name, t] : lm.named_parameters())
    if (name != "model.embed_tokens.weight") bytes += static_cast<double>(t.nbytes());
  return bytes;
}

// Sequences whose first generated token equals HF's, and the mean length of the common prefix.
std::string agreement(const Ids& ours, const Ids& theirs) {
  std::size_t first = 0;
  double prefix = 0;
  for (std::size_t s = 0; s < theirs.size(); ++s) {
    const auto& a = ours[s];
    const auto& b = theirs[s];
    const auto n = std::min(a.size(), b.size());
    std::size_t k = 0;
    while (k < n && a[k] == b[k]) ++k;
    first += k > 0;
    prefix += static_cast<double>(k);
  }
  return fmt::format("first token same as HF in {}/{} sequences, mean common prefix {:.1f} tokens",
                     first, theirs.size(), prefix / static_cast<double>(theirs.size()));
}

// Tokens per engine step (prefill chunks + decode tokens) in the bench's engines.
constexpr std::int64_t kChunk = 16384;

struct Shape {
  std::int64_t batch = 256, prompt = 512, new_tokens = 1024, hf_new = 64;
};

double kv_bytes_per_token(ponder::model::CausalLM& lm) {
  const auto layout = lm.kv_layout(bench_cache_dtype());
  double elements = 0;
  for (const auto& shape : layout.per_token_shapes) {
    double n = 1;
    for (const auto d : shape) n *= static_cast<double>(d);
    elements += n;
  }
  return elements * static_cast<double>(layout.num_layers * c10::elementSize(layout.dtype));
}

// Decode roofline of the full run: each step after the first token reads every weight once and
// each sequence's KV so far, at the measured copy bandwidth.
void report_roofline(const Shape& w, const Run& first, const Run& full, ponder::model::CausalLM& lm,
                     double bandwidth) {
  const double weights = weight_bytes(lm), kv = kv_bytes_per_token(lm);
  const double b = static_cast<double>(w.batch), steps = static_cast<double>(w.new_tokens - 1);
  const double contexts = steps * static_cast<double>(w.prompt) + steps * (steps + 1) / 2;
  const double ideal = (steps * weights + b * kv * contexts) / bandwidth;
  const double decode = full.seconds - first.seconds;
  fmt::print(
      "\ndecode roofline: weights {:.2f} GB read per step (all but the embedding), KV {:.1f} KB "
      "per token ({:.2f} GB per step at the mean context); {:.0f} decode steps ideally take "
      "{:.2f} s at the copy bandwidth = {:.0f} tokens/s\n",
      weights / 1e9, kv / 1e3, b * kv * contexts / steps / 1e9, steps, ideal, b * steps / ideal);
  fmt::print(
      "ponder decode: {:.2f} s ({} new-token run minus the 1-token run) = {:.0f} tokens/s, "
      "{:.1f} ms per step; fraction of the roofline {:.2f}\n",
      decode, w.new_tokens, b * steps / decode, decode / steps * 1e3, ideal / decode);
  fmt::print(
      "engine: {} steps, mean batch {:.1f} sequences, {} preemptions, peak {} of {} blocks\n",
      full.metrics.steps, full.metrics.mean_batch_sequences, full.metrics.preemptions,
      full.metrics.peak_blocks_used, full.metrics.num_blocks);
}

void print_row(std::int64_t n, double tokens, double hf_s, double ours) {
  if (hf_s > 0)
    fmt::print("{:>10} | {:>9.2f} {:>10.0f} | {:>9.2f} {:>10.0f} | {:>6.1f}x\n", n, hf_s,
               tokens / hf_s, ours, tokens / ours, hf_s / ours);
  else
    fmt::print("{:>10} | {:>9} {:>10} | {:>9.2f} {:>10.0f} |\n", n, "-", "-", ours, tokens / ours);
}

void report(const Shape& w, const nlohmann::json& hf, const Run& first, const Run& short_run,
            const Run& full, ponder::model::CausalLM& lm, double bandwidth) {
  const double b = static_cast<double>(w.batch);
  if (hf.is_null()) {
    fmt::print(
        "\nponder only (no HF baseline): 1 token {:.2f} s, {} tokens {:.2f} s, {} tokens "
        "{:.2f} s = {:.0f} tokens/s\n",
        first.seconds, w.hf_new, short_run.seconds, w.new_tokens, full.seconds,
        b * static_cast<double>(w.new_tokens) / full.seconds);
    report_roofline(w, first, full, lm, bandwidth);
    return;
  }
  const auto& h = hf["workloads"];
  const double hf_first = h[0]["seconds"].get<double>(), hf_short = h[1]["seconds"].get<double>();
  fmt::print(
      "\n{} sequences x {}-token prompts, greedy, BF16, EOS ignored; tokens/s = generated tokens "
      "/ wall time of the whole generate call (prefill included)\n",
      w.batch, w.prompt);
  fmt::print("{:>10} | {:>9} {:>10} | {:>9} {:>10} | {:>7}\n", "new tokens", "HF s", "HF tok/s",
             "ponder s", "tok/s", "ratio");
  print_row(1, b, hf_first, first.seconds);
  print_row(w.hf_new, b * static_cast<double>(w.hf_new), hf_short, short_run.seconds);
  print_row(w.new_tokens, b * static_cast<double>(w.new_tokens), 0, full.seconds);
  const double decode_tokens = b * static_cast<double>(w.hf_new - 1);
  const double hf_decode = decode_tokens / (hf_short - hf_first);
  const double our_decode = decode_tokens / (short_run.seconds - first.seconds);
  const double our_full_decode =
      b * static_cast<double>(w.new_tokens - 1) / (full.seconds - first.seconds);
  fmt::print(
      "decode only (minus the 1-token run): HF {:.0f} tokens/s over {} tokens; ponder {:.0f} "
      "tokens/s over {} ({:.1f}x), {:.0f} tokens/s over {} ({:.1f}x HF's {}-token rate)\n",
      hf_decode, w.hf_new, our_decode, w.hf_new, our_decode / hf_decode, our_full_decode,
      w.new_tokens, our_full_decode / hf_decode, w.hf_new);
  fmt::print("{}-token runs: {}\n", w.hf_new, agreement(short_run.ids, h[1]["ids"].get<Ids>()));
  report_roofline(w, first, full, lm, bandwidth);
}

// The longest timed workload once, untimed: the engine records the full batch's decode graph on
// its third ask and again whenever the block tables widen, so only a run as long as the longest
// timed one leaves a graph that no timed run has to record (a 2-token warm-up left the 64-token
// run recording it and the 1,024-token run re-recording it at 17 pages).
void warm_up(ponder::engine::RolloutEngine& engine, const Ids& prompts, std::int64_t longest) {
  run_ponder(engine, prompts, longest);
}

// A short warm-up with the same graphs: 16 new tokens (every sequence decodes together for more
// than DecodeGraphs::kRecordAfter steps after the prefill chunks), the first prompt lengthened so
// that the block tables reserved are as wide as the full workload's (no re-recording after).
void lean_warm_up(ponder::engine::RolloutEngine& engine, Ids prompts, std::int64_t prompt,
                  std::int64_t longest) {
  constexpr std::int64_t kNew = 16;
  auto& first = prompts.front();
  while (static_cast<std::int64_t>(first.size()) < prompt + longest - kNew)
    first.push_back(first[first.size() % static_cast<std::size_t>(prompt)]);
  run_ponder(engine, prompts, kNew);
}

// Milliseconds per decode step of `run` (new_tokens each) minus the 1-token run `first`.
double ms_per_step(const Run& first, const Run& run, std::int64_t new_tokens) {
  return (run.seconds - first.seconds) / static_cast<double>(new_tokens - 1) * 1e3;
}

// A fresh engine (warmed up) over the same prompts: its run of `new_tokens`, its ms per decode
// step, and how many sequences have `reference`'s tokens.
struct SecondEngine {
  Run run;
  double ms = 0;
  std::size_t same = 0;
};
SecondEngine run_second_engine(ponder::model::CausalLM& lm, const Ids& prompts, std::int64_t blocks,
                               std::int64_t batch, bool cuda_graphs, std::int64_t new_tokens,
                               const Run& reference) {
  ponder::engine::RolloutEngine engine(lm, nullptr,
                                       {.num_blocks = blocks,
                                        .max_batch_tokens = kChunk,
                                        .max_running = batch,
                                        .show_progress = false,
                                        .cuda_graphs = cuda_graphs,
                                        .kv_cache_dtype = bench_cache_dtype()});
  warm_up(engine, prompts, new_tokens);
  const Run first = run_ponder(engine, prompts, 1);
  SecondEngine second{run_ponder(engine, prompts, new_tokens)};
  second.ms = ms_per_step(first, second.run, new_tokens);
  for (std::size_t s = 0; s < prompts.size(); ++s)
    second.same += second.run.ids[s] == reference.ids[s];
  return second;
}

// The same engine with CUDA graphs off on the short workload: decode rate with and without.
void report_eager(const Shape& w, const Ids& prompts, const Run& first, const Run& short_run,
                  std::size_t graphs, ponder::model::CausalLM& lm, std::int64_t blocks) {
  const SecondEngine eager =
      run_second_engine(lm, prompts, blocks, w.batch, false, w.hf_new, short_run);
  const double graph_ms = ms_per_step(first, short_run, w.hf_new);
  fmt::print(
      "\ndecode steps as CUDA graphs ({} buckets recorded): {:.2f} ms per step over {} tokens; "
      "eager engine {:.2f} ms per step ({:.2f}x); {}/{} sequences with the eager engine's tokens\n",
      graphs, graph_ms, w.hf_new, eager.ms, eager.ms / graph_ms, eager.same, prompts.size());
}

// The full workload on a fresh engine (its graphs record the kernel) with the routed experts on
// PONDER_BENCH_EXPERT_GEMM's GEMM, against `full` (the automatic choice) from this run, then the
// decode-step profile with it; the model is back on the automatic choice after.
void compare_expert_gemm(const Shape& w, const Ids& prompts, const Run& first, const Run& full,
                         ponder::model::CausalLM& lm, std::int64_t blocks) {
  using ponder::model::ExpertGemm;
  const char* env = std::getenv("PONDER_BENCH_EXPERT_GEMM");
  if (!env) return;
  const std::map<std::string, ExpertGemm> kernels = {{"torch", ExpertGemm::kTorchGrouped},
                                                     {"few-rows", ExpertGemm::kFewRows},
                                                     {"wgmma", ExpertGemm::kWgmma},
                                                     {"large", ExpertGemm::kWgmmaLarge}};
  const auto it = kernels.find(env);
  if (it == kernels.end())
    throw ponder::Error(
        std::string("PONDER_BENCH_EXPERT_GEMM: expected torch, few-rows, wgmma or large, got ") +
        env);
  lm.set_expert_gemm(it->second);
  const SecondEngine alt =
      run_second_engine(lm, prompts, blocks, w.batch, true, w.new_tokens, full);
  const double base_ms = ms_per_step(first, full, w.new_tokens);
  fmt::print(
      "\nrouted experts on {}: {} tokens in {:.2f} s = {:.0f} tokens/s, decode {:.2f} ms per "
      "step vs {:.2f} with the automatic choice ({:.2f}x); {}/{} sequences with its tokens\n",
      env, w.new_tokens, alt.run.seconds,
      static_cast<double>(w.batch * w.new_tokens) / alt.run.seconds, alt.ms, base_ms,
      base_ms / alt.ms, alt.same, prompts.size());
  profile_decode(lm, w.batch, w.prompt + w.new_tokens / 2, "");
  lm.set_expert_gemm(ExpertGemm::kAuto);
}

// The 1-token workload (the prompts' prefill) on fresh engines whose steps take each number of
// tokens in PONDER_BENCH_PREFILL_CHUNKS (comma-separated), one untimed run first.
void sweep_prefill_chunks(const Shape& w, const Ids& prompts, ponder::model::CausalLM& lm) {
  const char* env = std::getenv("PONDER_BENCH_PREFILL_CHUNKS");
  if (!env || !*env) return;
  fmt::print("\nprefill of {} x {}-token prompts (1-token run) by engine step size:\n", w.batch,
             w.prompt);
  std::string list = env;
  for (std::size_t at = 0; at < list.size();) {
    const std::size_t comma = std::min(list.find(',', at), list.size());
    const std::int64_t chunk = std::stoll(list.substr(at, comma - at));
    at = comma + 1;
    ponder::engine::RolloutEngine engine(lm, nullptr,
                                         {.num_blocks = w.batch * (w.prompt / 64 + 1) + 1,
                                          .max_batch_tokens = chunk,
                                          .max_running = w.batch,
                                          .show_progress = false,
                                          .kv_cache_dtype = bench_cache_dtype()});
    run_ponder(engine, prompts, 1);
    const Run run = run_ponder(engine, prompts, 1);
    fmt::print("  {:>6} tokens per step: {:.3f} s = {:.0f} prompt tokens/s ({} steps)\n", chunk,
               run.seconds, static_cast<double>(w.batch * w.prompt) / run.seconds,
               run.metrics.steps);
  }
}

bool env_is(const char* name, const std::string& value) {
  const char* env = std::getenv(name);
  return env && value == env;
}

// PONDER_BENCH_LEAN=1: the full workload only (1-token run for the decode rate), a short warm-up,
// the decode-step profile; `graphs` recorded before the timed runs are compared with after.
void bench_lean(const Shape& w, const Ids& prompts, ponder::model::CausalLM& lm,
                ponder::engine::RolloutEngine& engine, double bandwidth, const std::string& trace) {
  lean_warm_up(engine, prompts, w.prompt, w.new_tokens);
  const std::size_t graphs = engine.captured_graphs();
  const Run first = run_ponder(engine, prompts, 1);
  const Run full = run_ponder(engine, prompts, w.new_tokens);
  fmt::print("\nponder only (lean): 1 token {:.2f} s, {} tokens {:.2f} s = {:.0f} tokens/s\n",
             first.seconds, w.new_tokens, full.seconds,
             static_cast<double>(w.batch * w.new_tokens) / full.seconds);
  report_roofline(w, first, full, lm, bandwidth);
  fmt::print("decode graphs: {} recorded in the warm-up, {} after the timed runs\n", graphs,
             engine.captured_graphs());
  profile_decode(lm, w.batch, w.prompt + w.new_tokens / 2, trace);
}

// How many of two runs' sequences have the same tokens.
std::size_t same_sequences(const Ids& a, const Ids& b) {
  std::size_t same = 0;
  for (std::size_t s = 0; s < a.size(); ++s) same += a[s] == b[s];
  return same;
}

// PONDER_BENCH_ASYNC_AB=1: the full workload with decode steps that wait for the host (A: a
// second engine, async_decode off) and launched ahead (B: `engine`), in the order A B B A; per
// run its decode ms per step (minus the shared 1-token run), decode and end-to-end tokens/s.
void bench_async_ab(const Shape& w, const Ids& prompts, ponder::model::CausalLM& lm,
                    ponder::engine::RolloutEngine& engine, std::int64_t blocks) {
  ponder::engine::RolloutEngine sync(lm, nullptr,
                                     {.num_blocks = blocks,
                                      .max_batch_tokens = kChunk,
                                      .max_running = w.batch,
                                      .show_progress = false,
                                      .async_decode = false,
                                      .kv_cache_dtype = bench_cache_dtype()});
  lean_warm_up(sync, prompts, w.prompt, w.new_tokens);
  lean_warm_up(engine, prompts, w.prompt, w.new_tokens);
  const Run first = run_ponder(engine, prompts, 1);
  const double b = static_cast<double>(w.batch);
  fmt::print("\nasync decode A/B (1-token run {:.2f} s):\n", first.seconds);
  std::map<bool, std::vector<double>> ms;
  std::vector<Ids> ids;
  for (const bool async : {false, true, true, false}) {
    const Run run = run_ponder(async ? engine : sync, prompts, w.new_tokens);
    const double step = ms_per_step(first, run, w.new_tokens);
    ms[async].push_back(step);
    ids.push_back(run.ids);
    fmt::print(
        "  {}: {:.2f} s, decode {:.2f} ms per step = {:.0f} tokens/s, end to end {:.0f} tokens/s, "
        "{} of {} steps launched ahead, {}/{} sequences with the first run's tokens\n",
        async ? "async (B)" : "sync  (A)", run.seconds, step, b / (step / 1e3),
        b * static_cast<double>(w.new_tokens) / run.seconds, run.metrics.steps_ahead,
        run.metrics.steps, same_sequences(run.ids, ids.front()), prompts.size());
  }
  const auto mean = [](const std::vector<double>& v) { return (v[0] + v[1]) / 2; };
  fmt::print("  decode step: sync {:.3f} ms, async {:.3f} ms ({:+.3f} ms, {:.3f}x)\n",
             mean(ms[false]), mean(ms[true]), mean(ms[true]) - mean(ms[false]),
             mean(ms[false]) / mean(ms[true]));
}

void bench(const Shape& w, const fs::path& dir, const std::string& trace) {
  const double bandwidth = copy_bandwidth_gbs() * 1e9;
  fmt::print("device-to-device copy: {:.0f} GB/s (read + write)\n", bandwidth / 1e9);
  auto start = Clock::now();
  const bool drawn = fs::exists(dir / "config.json");  // by an earlier run (PONDER_BENCH_MODEL_DIR)
  const auto config = ponder::model::init_model(
      ponder::model::preset_config("deepseek-v2-lite"), dir,
      {.seed = 1, .config_only = drawn, .dtype = at::kBFloat16, .device = at::kCUDA});
  fmt::print("init-model deepseek-v2-lite (BF16, drawn on the GPU): {:.1f} s{}\n", since(start),
             drawn ? " (drawn before: reused)" : "");
  const Ids prompts = ponder::bench::make_prompts(w.batch, w.prompt, config.vocab_size, 7);
  start = Clock::now();
  // PONDER_BENCH_NO_HF=1 skips the baseline (ponder's rows and the roofline only).
  const bool no_hf = env_is("PONDER_BENCH_NO_HF", "1");
  const bool lean = no_hf && env_is("PONDER_BENCH_LEAN", "1");
  nlohmann::json hf;
  if (!no_hf) {
    hf = run_hf(dir, prompts, {1, w.hf_new});
    fmt::print("HF run (load + warm-up + 2 generates): {:.1f} s  [HF {}]\n", since(start),
               hf["versions"].dump());
  }
  start = Clock::now();
  auto lm = ponder::model::load_causal_lm(dir, at::kCUDA, at::kBFloat16);
  fmt::print("ponder load: {:.1f} s\n", since(start));
  const std::int64_t blocks = w.batch * ((w.prompt + w.new_tokens + 63) / 64) + 1;
  ponder::engine::RolloutEngine engine(*lm, nullptr,
                                       {.num_blocks = blocks,
                                        .max_batch_tokens = kChunk,
                                        .max_running = w.batch,
                                        .show_progress = false,
                                        .kv_cache_dtype = bench_cache_dtype()});
  if (lean && env_is("PONDER_BENCH_ASYNC_AB", "1"))
    return bench_async_ab(w, prompts, *lm, engine, blocks);
  if (lean) return bench_lean(w, prompts, *lm, engine, bandwidth, trace);
  warm_up(engine, prompts, w.new_tokens);
  const Run first = run_ponder(engine, prompts, 1);
  const Run short_run = run_ponder(engine, prompts, w.hf_new);
  const Run full = run_ponder(engine, prompts, w.new_tokens);
  report(w, hf, first, short_run, full, *lm, bandwidth);
  if (env_is("PONDER_BENCH_ROWS_ONLY", "1")) return;
  report_eager(w, prompts, first, short_run, engine.captured_graphs(), *lm, blocks);
  profile_decode(*lm, w.batch, w.prompt + w.new_tokens / 2, trace);
  profile_prefill(*lm, kChunk, w.prompt);
  sweep_prefill_chunks(w, prompts, *lm);
  compare_expert_gemm(w, prompts, first, full, *lm, blocks);
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // logs show progress when redirected
  Shape w;
  if (argc > 4)
    w = {std::atoll(argv[1]), std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4])};
  const std::string trace = argc > 5 ? argv[5] : "";
  if (!at::hasCUDA()) {
    fmt::print(stderr, "bench_rollout_gpu: no CUDA device\n");
    return 1;
  }
  const char* shared = std::getenv("PONDER_BENCH_MODEL_DIR");
  const bool keep = shared && *shared;
  const fs::path dir =
      keep ? fs::path(shared)
           : fs::temp_directory_path() / ("ponder_bench_rollout_gpu_" + std::to_string(getpid()));
  int rc = 0;
  try {
    bench(w, dir, trace);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_rollout_gpu: {}\n", e.what());
    rc = 1;
  }
  if (!keep) fs::remove_all(dir);
  return rc;
}
