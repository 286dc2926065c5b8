// FP8 on the GPU, measured in one run: block-scaled E4M3 GEMMs (cuBLAS via torch._scaled_mm) on
// DeepSeek-V3 linear shapes as a ratio to cuBLAS BF16; the quantisers against their ATen
// references; an FP8 linear layer's forward + backward against BF16; and a small MLA/MoE model
// trained with train.precision fp8 and bf16 from the same init on the same batches (step time and
// loss curves). Usage: bench_fp8 [gemm] [quant] [linear] [train STEPS] (default: all, 200 steps).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <fmt/core.h>

#include <chrono>
#include <functional>
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
// 0.2, 0.1): the best achievable loss is the chain's entropy, 1.28 nats.
std::vector<at::Tensor> markov_batches(std::int64_t count, std::int64_t seqs, std::int64_t len) {
  at::manual_seed(5);
  const at::Tensor next = at::randint(0, 6400, {6400, 4}, gpu(at::kLong));
  const at::Tensor probs = at::tensor(std::vector<float>{0.4f, 0.3f, 0.2f, 0.1f}).to(at::kCUDA);
  std::vector<at::Tensor> batches;
  for (std::int64_t b = 0; b < count; ++b) {
    std::vector<at::Tensor> cols = {at::randint(0, 6400, {seqs}, gpu(at::kLong))};
    for (std::int64_t t = 0; t < len; ++t) {
      const at::Tensor pick = at::multinomial(probs.expand({seqs, 4}), 1).squeeze(1);
      cols.push_back(next.index({cols.back(), pick}));
    }
    batches.push_back(at::stack(cols, 1));  // [seqs, len + 1]
  }
  return batches;
}

struct TrainRun {
  std::vector<double> losses;
  double step_ms = 0;
};

TrainRun train(const std::filesystem::path& dir, model::LinearPrecision precision,
               const std::vector<at::Tensor>& batches, std::int64_t steps) {
  auto lm = model::load_causal_lm(dir, at::kCUDA, at::kFloat);
  lm->set_linear_precision(precision);
  std::vector<at::Tensor> params;
  for (auto& [name, t] : lm->named_parameters())
    if (!name.ends_with("e_score_correction_bias")) params.push_back(t.requires_grad_(true));
  train::AdamW optimizer(params, {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8});
  const std::int64_t seqs = batches[0].size(0), len = batches[0].size(1) - 1;
  const at::Tensor positions = at::arange(len, gpu(at::kLong)).repeat({seqs});
  const at::Tensor cu = at::arange(0, seqs * len + 1, len, gpu(at::kLong));
  TrainRun run;
  const std::int64_t timed_from = 5;
  auto begin = std::chrono::steady_clock::now();
  for (std::int64_t step = 0; step < steps; ++step) {
    if (step == timed_from) {
      c10::cuda::device_synchronize();
      begin = std::chrono::steady_clock::now();
    }
    const at::Tensor& tokens = batches[step % batches.size()];
    const at::Tensor ids = tokens.narrow(1, 0, len).reshape(-1);
    const at::Tensor targets = tokens.narrow(1, 1, len).reshape(-1);
    const at::Tensor loss =
        -lm->token_logprobs(lm->forward_hidden(ids, positions, cu), targets).mean();
    loss.backward();
    train::clip_grad_norm(params, 1.0);
    optimizer.step(1e-3);
    optimizer.zero_grad();
    lm->update_routing_bias(1e-3);
    run.losses.push_back(loss.item<double>());
  }
  c10::cuda::device_synchronize();
  run.step_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count() /
      static_cast<double>(steps - timed_from);
  return run;
}

void bench_train(std::int64_t steps) {
  const std::filesystem::path dir = "/tmp/ponder_bench_fp8_model";
  model::init_model(small_moe(), dir, {.seed = 1});
  const auto batches = markov_batches(64, 8, 1024);
  fmt::print(
      "\nTraining: small MLA/MoE (hidden 1024, 4 layers, 16 experts top-4), {} steps of "
      "8 x 1024 tokens, AdamW lr 1e-3, FP32 master weights\n",
      steps);
  const TrainRun bf16 = train(dir, model::LinearPrecision::kBf16, batches, steps);
  const TrainRun fp8 = train(dir, model::LinearPrecision::kFp8, batches, steps);
  fmt::print("step time: bf16 {:.1f} ms  fp8 {:.1f} ms  (fp8 / bf16 {:.2f})\n", bf16.step_ms,
             fp8.step_ms, fp8.step_ms / bf16.step_ms);
  fmt::print("{:>5} {:>9} {:>9} {:>9}\n", "step", "bf16", "fp8", "gap");
  for (std::int64_t s = 0; s < steps; ++s)
    if (s % 10 == 9 || s == 0)
      fmt::print("{:>5} {:>9.4f} {:>9.4f} {:>8.2f}%\n", s + 1, bf16.losses[s], fp8.losses[s],
                 100 * (fp8.losses[s] - bf16.losses[s]) / bf16.losses[s]);
  auto tail_mean = [&](const std::vector<double>& l) {
    double sum = 0;
    for (std::int64_t s = steps - 10; s < steps; ++s) sum += l[s];
    return sum / 10;
  };
  const double b = tail_mean(bf16.losses), f = tail_mean(fp8.losses);
  fmt::print("final loss (mean of last 10 steps): bf16 {:.4f}  fp8 {:.4f}  gap {:+.3f}%\n", b, f,
             100 * (f - b) / b);
}

}  // namespace
}  // namespace ponder

int main(int argc, char** argv) {
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
    auto it = std::find(args.begin(), args.end(), "train");
    ponder::bench_train(it != args.end() && it + 1 != args.end() ? std::stoll(*(it + 1)) : 200);
  });
  return 0;
}
