// FP8 on the GPU, measured in one run: block-scaled E4M3 GEMMs (cuBLAS via torch._scaled_mm) on
// DeepSeek-V3 linear shapes as a ratio to cuBLAS BF16; the quantisers against their ATen
// references; an FP8 linear layer's forward + backward against BF16; and a small MLA/MoE model
// trained with FP8 and BF16 linears, experts looped or grouped (step time, a Kineto profile of
// one step), then BF16 vs FP8 from the same inits on the same batches over several seeds (loss
// curves, final-loss gap). Usage: bench_fp8 [gemm] [quant] [linear] [train [SEEDS
// [PARITY_SECONDS]]] (default: all; 3 seeds, 180 s of parity runs).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <fmt/core.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bench/common/cuda_timing.h"
#include "kernels/fp8.h"
#include "model/fp8_linear.h"
#include "model/init_model.h"
#include "model/transformer.h"
#include "train/adamw.h"

namespace ponder {
namespace {

using bench::median_ms;
using kernels::Fp8Scaling;

at::TensorOptions gpu(at::ScalarType dtype) {
  return at::TensorOptions().device(at::kCUDA).dtype(dtype);
}

double tflops(double m, double n, double k, double ms) { return 2 * m * n * k / ms / 1e9; }

// [in, out] of DeepSeek-V3 linears: expert gate/up, expert down, dense gate/up.
void bench_gemm() {
  fmt::print("\nGEMM y[M, N] = x[M, K] W[N, K]^T, BF16 out (TFLOP/s; ratio to cuBLAS BF16)\n");
  fmt::print("{:>6} {:>6} {:>6} {:>10} {:>10} {:>7} {:>14} {:>7}\n", "M", "K", "N", "bf16", "fp8",
             "ratio", "fp8+quant(x)", "ratio");
  for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {7168, 2048}, {2048, 7168}, {7168, 18432}})
    for (const std::int64_t m : {4096, 8192, 16384}) {
      const at::Tensor x = at::randn({m, k}, gpu(at::kBFloat16));
      const at::Tensor w = at::randn({n, k}, gpu(at::kBFloat16)) * 0.02;
      const kernels::Fp8Tensor a = kernels::quantize_fp8(x, Fp8Scaling::kTile1x128);
      const kernels::Fp8Tensor b = kernels::quantize_fp8(w, Fp8Scaling::kBlock128x128);
      const double bf16 = median_ms([&] { at::mm(x, w.t()); });
      const double fp8 = median_ms([&] { kernels::fp8_matmul_cuda(a, b, at::kBFloat16); });
      const double fused = median_ms([&] {
        kernels::fp8_matmul_cuda(kernels::quantize_fp8(x, Fp8Scaling::kTile1x128), b,
                                 at::kBFloat16);
      });
      fmt::print("{:>6} {:>6} {:>6} {:>10.0f} {:>10.0f} {:>6.2f}x {:>14.0f} {:>6.2f}x\n", m, k, n,
                 tflops(m, n, k, bf16), tflops(m, n, k, fp8), bf16 / fp8, tflops(m, n, k, fused),
                 bf16 / fused);
    }
}

void bench_quant() {
  fmt::print("\nQuantisers on BF16 [16384, 7168] (read 2 B + write 1 B per element)\n");
  const at::Tensor x = at::randn({16384, 7168}, gpu(at::kBFloat16));
  const double bytes = 3.0 * x.numel();
  auto row = [&](const char* what, double aten, double kernel) {
    fmt::print("{:<26} aten {:8.3f} ms  kernel {:7.3f} ms  x{:6.1f}  {:5.0f} GB/s\n", what, aten,
               kernel, aten / kernel, bytes / kernel / 1e6);
  };
  for (const auto scaling : {Fp8Scaling::kTile1x128, Fp8Scaling::kBlock128x128})
    row(scaling == Fp8Scaling::kTile1x128 ? "1x128 tiles" : "128x128 blocks",
        median_ms([&] { kernels::quantize_fp8_reference(x, scaling); }),
        median_ms([&] { kernels::quantize_fp8_cuda(x, scaling); }));
  row("1x128 tiles of x^T",
      median_ms([&] { kernels::quantize_fp8_reference(x.t(), Fp8Scaling::kTile1x128); }),
      median_ms([&] { kernels::quantize_fp8_transposed_cuda(x); }));
  // 16 groups of 1024 rows: the MoE experts' weight-gradient operands.
  std::vector<std::int64_t> ends;
  for (std::int64_t g = 1; g <= 16; ++g) ends.push_back(g * 1024);
  row("x^T tiles in 16 row groups", median_ms([&] {
        for (std::int64_t g = 0; g < 16; ++g)
          kernels::quantize_fp8_reference(x.narrow(0, g * 1024, 1024).t(), Fp8Scaling::kTile1x128);
      }),
      median_ms([&] { kernels::quantize_fp8_transposed_segments_cuda(x, ends); }));
  // Writes 2 B per element (W and W^T): the GB/s column counts 3 B.
  row("128x128 blocks + W^T", median_ms([&] {
        kernels::quantize_fp8_reference(x, Fp8Scaling::kBlock128x128).data.t().contiguous();
      }),
      median_ms([&] { kernels::quantize_fp8_blocks_with_transpose_cuda(x); }));
}

// Forward + backward of one linear layer with an FP32 master weight: 3 GEMMs of 2MNK each.
void bench_linear() {
  fmt::print("\nLinear layer forward + backward (BF16 activations, FP32 master weight)\n");
  for (const auto& [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {7168, 2048}, {2048, 7168}, {7168, 18432}}) {
    const std::int64_t m = 8192;
    const at::Tensor x = at::randn({m, k}, gpu(at::kBFloat16)).requires_grad_(true);
    const at::Tensor w = (at::randn({n, k}, gpu(at::kFloat)) * 0.02).requires_grad_(true);
    const at::Tensor g = at::randn({m, n}, gpu(at::kBFloat16));
    const double bf16 = median_ms([&] { at::linear(x, w.to(at::kBFloat16)).backward(g); });
    const double fp8 = median_ms([&] { model::fp8_linear(x, w).backward(g); });
    fmt::print(
        "M {} K {} N {}: bf16 {:.3f} ms ({:.0f} TFLOP/s)  fp8 {:.3f} ms ({:.0f} TFLOP/s)  "
        "x{:.2f}\n",
        m, k, n, bf16, 3 * tflops(m, n, k, bf16), fp8, 3 * tflops(m, n, k, fp8), bf16 / fp8);
  }
}

// A small DeepSeek-V3-style model: MLA, 1 dense + 3 MoE layers of 16 routed (top 4) + 1 shared.
nlohmann::json small_moe() {
  nlohmann::json c = model::preset_config("tiny-mla");
  c.update({{"hidden_size", 1024},
            {"intermediate_size", 2816},
            {"moe_intermediate_size", 512},
            {"num_hidden_layers", 4},
            {"num_attention_heads", 8},
            {"num_key_value_heads", 8},
            {"q_lora_rank", 384},
            {"kv_lora_rank", 256},
            {"qk_nope_head_dim", 128},
            {"qk_rope_head_dim", 64},
            {"v_head_dim", 128},
            {"n_routed_experts", 16},
            {"num_experts_per_tok", 4},
            {"n_group", 4},
            {"topk_group", 2}});
  return c;
}

// Token streams of a fixed random Markov chain (4 successors per token, probabilities 0.4, 0.3,
// 0.2, 0.1): the best achievable loss is the chain's entropy, 1.28 nats. `seed` draws the streams.
std::vector<at::Tensor> markov_batches(std::int64_t count, std::int64_t seqs, std::int64_t len,
                                       std::uint64_t seed) {
  at::manual_seed(5);
  const at::Tensor next = at::randint(0, 6400, {6400, 4}, gpu(at::kLong));
  const at::Tensor probs = at::tensor(std::vector<float>{0.4f, 0.3f, 0.2f, 0.1f}).to(at::kCUDA);
  at::manual_seed(seed);
  // Every batch's sequences walk the chain together: one draw per position for all of them.
  std::vector<at::Tensor> cols = {at::randint(0, 6400, {count * seqs}, gpu(at::kLong))};
  for (std::int64_t t = 0; t < len; ++t) {
    const at::Tensor pick = at::multinomial(probs.expand({count * seqs, 4}), 1).squeeze(1);
    cols.push_back(next.index({cols.back(), pick}));
  }
  return at::stack(cols, 1).split(seqs);  // count x [seqs, len + 1]
}

// One training setup: linear precision and whether the MoE experts run as grouped GEMMs.
struct Setup {
  const char* name;
  model::LinearPrecision precision;
  bool grouped;
};

// A model from `dir` with its optimizer; step() runs one training step and returns the loss.
class Trainer {
 public:
  Trainer(const std::filesystem::path& dir, const Setup& setup,
          const std::vector<at::Tensor>& batches)
      : lm_(model::load_causal_lm(dir, at::kCUDA, at::kFloat)), batches_(batches) {
    lm_->set_linear_precision(setup.precision);
    lm_->set_training_options({.grouped_experts = setup.grouped});
    for (auto& [name, t] : lm_->named_parameters())
      if (!name.ends_with("e_score_correction_bias")) params_.push_back(t.requires_grad_(true));
    optimizer_ = std::make_unique<train::AdamW>(
        params_, train::AdamWOptions{.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8});
    const std::int64_t seqs = batches[0].size(0), len = batches[0].size(1) - 1;
    positions_ = at::arange(len, gpu(at::kLong)).repeat({seqs});
    cu_ = at::arange(0, seqs * len + 1, len, gpu(at::kLong));
  }

  double step() {
    const at::Tensor& tokens = batches_[step_++ % batches_.size()];
    const std::int64_t len = tokens.size(1) - 1;
    const at::Tensor ids = tokens.narrow(1, 0, len).reshape(-1);
    const at::Tensor targets = tokens.narrow(1, 1, len).reshape(-1);
    const at::Tensor loss =
        -lm_->token_logprobs(lm_->forward_hidden(ids, positions_, cu_), targets).mean();
    loss.backward();
    train::clip_grad_norm(params_, 1.0);
    optimizer_->step(1e-3);
    optimizer_->zero_grad();
    lm_->update_routing_bias(1e-3);
    return loss.item<double>();
  }

 private:
  std::unique_ptr<model::CausalLM> lm_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<train::AdamW> optimizer_;
  const std::vector<at::Tensor>& batches_;
  at::Tensor positions_, cu_;
  std::size_t step_ = 0;
};

// Mean wall time of steps 6 .. steps (the first 5 warm up).
double step_ms(Trainer& trainer, std::int64_t steps) {
  for (int s = 0; s < 5; ++s) trainer.step();
  c10::cuda::device_synchronize();
  const auto begin = std::chrono::steady_clock::now();
  for (std::int64_t s = 5; s < steps; ++s) trainer.step();
  c10::cuda::device_synchronize();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin)
             .count() /
         static_cast<double>(steps - 5);
}

// What a GPU kernel is, from its name (attention first: its CUTLASS kernels say "cutlass"; cuBLAS
// names its Hopper GEMMs nvjet_*, FP8 and BF16 alike).
std::string kernel_kind(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("quantize_")) return "fp8 quantisers (ponder)";
  if (has("fmha") || has("flash") || has("Attention") || has("softmax")) return "attention";
  if (has("nvjet") || has("gemm") || has("xmma") || has("cutlass") || has("Kernel2"))
    return "GEMM (cuBLAS, CUTLASS)";
  if (has("Memcpy") || has("Memset") || has("copy")) return "copies";
  if (has("index") || has("scatter") || has("gather") || has("sort") || has("radix") ||
      has("nonzero"))
    return "index / sort";
  if (has("reduce") || has("Reduce")) return "reductions";
  if (has("elementwise") || has("vectorized") || has("Elementwise")) return "elementwise";
  return "other";
}

// GPU kernel time of one training step by kind, and the busiest kernels, from the Kineto profiler.
void profile_step(Trainer& trainer, const char* label) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  const auto begin = std::chrono::steady_clock::now();
  trainer.step();
  c10::cuda::device_synchronize();
  const double wall =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
  const auto result = prof::disableProfiler();
  std::map<std::string, std::pair<double, int>> kinds, kernels;
  double busy = 0;
  int launches = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const double ms = static_cast<double>(e.durationNs()) / 1e6;
    busy += ms;
    ++launches;
    auto& kind = kinds[kernel_kind(e.name())];
    kind.first += ms, ++kind.second;
    auto& kernel = kernels[e.name().substr(0, 90)];
    kernel.first += ms, ++kernel.second;
  }
  fmt::print("\nprofile {}: wall {:.1f} ms (profiled), GPU kernels {:.1f} ms in {} launches\n",
             label, wall, busy, launches);
  auto print_top = [](const std::map<std::string, std::pair<double, int>>& m, std::size_t n) {
    std::vector<std::pair<std::string, std::pair<double, int>>> v(m.begin(), m.end());
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
    for (std::size_t i = 0; i < std::min(n, v.size()); ++i)
      fmt::print("  {:8.2f} ms {:6} x  {}\n", v[i].second.first, v[i].second.second, v[i].first);
  };
  print_top(kinds, 20);
  fmt::print(" top kernels:\n");
  print_top(kernels, 12);
}

double tail_mean(const std::vector<double>& losses) {
  double sum = 0;
  for (std::size_t s = losses.size() - 10; s < losses.size(); ++s) sum += losses[s];
  return sum / 10;
}

void print_spread(const std::vector<double>& gaps) {
  double mean = 0, var = 0;
  for (const double g : gaps) mean += g / static_cast<double>(gaps.size());
  for (const double g : gaps) var += (g - mean) * (g - mean);
  fmt::print(
      "final-loss gap over {} seeds: mean {:+.3f}%, sd {:.3f}%, min {:+.3f}%, max {:+.3f}%\n",
      gaps.size(), mean, std::sqrt(var / std::max<double>(1, gaps.size() - 1.0)),
      *std::min_element(gaps.begin(), gaps.end()), *std::max_element(gaps.begin(), gaps.end()));
}

// Step time of every setup and a profile of the grouped ones on the same model and batches, then
// BF16 vs FP8 loss curves from `seeds` inits and data streams in about `parity_s` seconds.
void bench_train(int seeds, double parity_s) {
  const std::filesystem::path dir = "/tmp/ponder_bench_fp8_model";
  fmt::print(
      "\nTraining: small MLA/MoE (hidden 1024, 4 layers, 16 experts top-4), 8 x 1024 tokens per "
      "step, AdamW lr 1e-3, FP32 master weights\n");
  model::init_model(small_moe(), dir / "seed-1", {.seed = 1});
  const auto batches = markov_batches(64, 8, 1024, 101);
  const std::vector<Setup> setups = {{"bf16 loop", model::LinearPrecision::kBf16, false},
                                     {"bf16 grouped", model::LinearPrecision::kBf16, true},
                                     {"fp8 loop", model::LinearPrecision::kFp8, false},
                                     {"fp8 grouped", model::LinearPrecision::kFp8, true}};
  std::map<std::string, double> ms;
  for (const Setup& setup : setups) {
    try {
      Trainer trainer(dir / "seed-1", setup, batches);
      ms[setup.name] = step_ms(trainer, 20);
      fmt::print("step time {:<13} {:7.1f} ms\n", setup.name, ms[setup.name]);
    } catch (const std::exception& e) {
      fmt::print("{}: failed: {}\n", setup.name, e.what());
    }
  }
  if (ms.contains("bf16 grouped") && ms.contains("fp8 grouped"))
    fmt::print("fp8 grouped / bf16 grouped step time: {:.3f}\n",
               ms["fp8 grouped"] / ms["bf16 grouped"]);
  // Parity runs use the grouped setups (falling back to the loop where grouped failed).
  const Setup bf16 = ms.contains("bf16 grouped") ? setups[1] : setups[0];
  const Setup fp8 = ms.contains("fp8 grouped") ? setups[3] : setups[2];
  // Seed 1 also trains the other BF16 setup: the same precision with other rounding orders, the
  // noise floor of a final-loss gap.
  const Setup control = bf16.grouped ? setups[0] : setups[1];
  const bool with_control = ms.contains(control.name);
  const double run_ms =
      (ms[bf16.name] + ms[fp8.name]) * seeds + (with_control ? ms[control.name] : 0);
  const auto steps = static_cast<std::int64_t>(std::min(400.0, parity_s * 1000 / run_ms) / 10) * 10;
  fmt::print("\nLoss parity: {} vs {}, {} seeds x {} steps\n", bf16.name, fp8.name, seeds, steps);
  std::vector<double> gaps;
  // Every step's losses as CSV into $OUT when set (the device runner's logs).
  const char* out_dir = std::getenv("OUT");
  std::ofstream csv(out_dir ? std::filesystem::path(out_dir) / "parity.csv" : "/dev/null");
  csv << "seed,step,bf16,fp8,bf16_control\n";
  for (int seed = 1; seed <= seeds && steps >= 20; ++seed) {
    const auto path = dir / ("seed-" + std::to_string(seed));
    if (seed > 1) model::init_model(small_moe(), path, {.seed = static_cast<std::uint64_t>(seed)});
    const auto data = markov_batches(steps, 8, 1024, 100 + seed);  // new data at every step
    Trainer b(path, bf16, data), f(path, fp8, data);
    std::optional<Trainer> c;
    if (seed == 1 && with_control) c.emplace(path, control, data);
    std::vector<double> lb, lf, lc;
    for (std::int64_t s = 0; s < steps; ++s) {
      lb.push_back(b.step());
      lf.push_back(f.step());
      if (c) lc.push_back(c->step());
      csv << seed << ',' << s + 1 << ',' << lb.back() << ',' << lf.back() << ','
          << (c ? lc.back() : 0.0) << '\n';
    }
    csv.flush();
    if (c)
      fmt::print("seed 1 control: {} final loss {:.4f}, gap to {} {:+.3f}%\n", control.name,
                 tail_mean(lc), bf16.name, 100 * (tail_mean(lc) - tail_mean(lb)) / tail_mean(lb));
    fmt::print("seed {} loss at step", seed);
    for (std::int64_t s = steps / 8; s <= steps; s += steps / 8)
      fmt::print("  {}: {:.3f}/{:.3f}", s, lb[s - 1], lf[s - 1]);
    const double gap = 100 * (tail_mean(lf) - tail_mean(lb)) / tail_mean(lb);
    gaps.push_back(gap);
    fmt::print(
        "\nseed {} final loss (mean of last 10 steps): bf16 {:.4f}  fp8 {:.4f}  gap {:+.3f}%\n",
        seed, tail_mean(lb), tail_mean(lf), gap);
  }
  if (!gaps.empty()) print_spread(gaps);
  // Last: where one step's GPU time goes (after the parity runs, in case the profiler fails).
  for (const Setup& setup : setups) {
    if (!ms.contains(setup.name) ||
        (!setup.grouped && setup.precision != model::LinearPrecision::kFp8))
      continue;
    Trainer trainer(dir / "seed-1", setup, batches);
    for (int s = 0; s < 3; ++s) trainer.step();
    profile_step(trainer, setup.name);
  }
}

}  // namespace
}  // namespace ponder

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a redirected log as they are printed
  const std::vector<std::string> args(argv + 1, argv + argc);
  auto wanted = [&](const std::string& name) {
    return args.empty() || std::find(args.begin(), args.end(), name) != args.end();
  };
  cudaDeviceProp prop{};
  ponder::bench::check_cuda(cudaGetDeviceProperties(&prop, 0), "properties");
  fmt::print("device {} (sm_{}{}, {} SMs)\n", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
  // Each section on its own: one that fails prints why and the others still run.
  auto section = [&](const char* name, const std::function<void()>& run) {
    if (!wanted(name)) return;
    try {
      run();
    } catch (const std::exception& e) {
      fmt::print("{}: failed: {}\n", name, e.what());
    }
  };
  section("gemm", ponder::bench_gemm);
  section("quant", ponder::bench_quant);
  section("linear", ponder::bench_linear);
  section("train", [&] {
    // train [SEEDS [PARITY_SECONDS]]
    auto it = std::find(args.begin(), args.end(), "train");
    auto number = [&](std::ptrdiff_t k, double fallback) {
      return it != args.end() && args.end() - it > k ? std::stod(*(it + k)) : fallback;
    };
    ponder::bench_train(static_cast<int>(number(1, 3)), number(2, 180));
  });
  return 0;
}
