// One MoE layer on the GPU in BF16 (DeepSeek-V2-Lite: 64 experts top-6 + 2 shared; DeepSeek-V3:
// 256 experts top-8 + 1 shared): the grouped path (tokens sorted by expert, two grouped GEMMs)
// and the kernels::grouped_gemm kernels (few rows: cp.async + mma.sync, TMA + wgmma on Hopper;
// many rows: TMA + wgmma in 128 x 256 tiles) against the per-expert loop and against a dense BF16
// GEMM pair of the same FLOPs, same run.
// Usage: bench_moe [TOKENS...]  (default 256 4096 16384); PONDER_BENCH_ROUTE_ONLY=1 times only
// Moe::route (fused routing kernel) against the previous ATen routing chain.
#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/moe_gemm.h"
#include "kernels/moe_route.h"
#include "model/init_model.h"
#include "model/layers.h"

namespace {

using Clock = std::chrono::steady_clock;
using ponder::model::ModelConfig;

void sync(const at::Tensor& t) { t.reshape(-1)[0].item(); }

// Median seconds of fn() (synced) over `reps` runs after 2 warm-ups.
double median_seconds(const std::function<at::Tensor()>& fn, int reps) {
  for (int i = 0; i < 2; ++i) sync(fn());
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = Clock::now();
    sync(fn());
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// The layer's parameters under HF names, random BF16 on the GPU, stacked as the loader does.
struct Layer {
  ModelConfig config;
  std::vector<std::pair<std::string, at::Tensor>> params;
  ponder::model::Moe moe;
};

std::unique_ptr<Layer> make_layer(const std::string& preset) {
  auto layer = std::make_unique<Layer>();
  layer->config = ModelConfig::from_json(ponder::model::preset_config(preset), preset);
  const ModelConfig& c = layer->config;
  const auto opts = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  const std::string prefix = "model.layers." + std::to_string(c.first_k_dense_replace) + ".mlp";
  for (const auto& [name, shape] : ponder::model::parameter_shapes(c))
    if (name.starts_with(prefix + "."))
      layer->params.emplace_back(name, name.ends_with("correction_bias")
                                           ? at::randn(shape, opts.dtype(at::kFloat)) * 0.02
                                           : at::randn(shape, opts) * 0.05);
  auto stacked = ponder::model::stack_experts(c, prefix, layer->params);
  std::map<std::string, at::Tensor> by_name(layer->params.begin(), layer->params.end());
  layer->moe = ponder::model::make_moe(
      c, [&](const std::string& n) { return by_name.at(n); },
      [&](const std::string& n) -> std::optional<at::Tensor> {
        auto it = by_name.find(n);
        return it == by_name.end() ? std::nullopt : std::optional(it->second);
      },
      prefix, std::move(stacked));
  return layer;
}

// Median seconds per call of fn() over `reps` bursts of 20 calls, each burst synced once (the
// routing ops are short: per-call syncs would time the host).
double burst_seconds(const std::function<at::Tensor()>& fn, int reps) {
  constexpr int kCalls = 20;
  return median_seconds(
             [&] {
               at::Tensor last;
               for (int i = 0; i < kCalls; ++i) last = fn();
               return last;
             },
             reps) /
         kCalls;
}

// Moe::route (BF16 router GEMM with FP32 output + the fused kernel) against the previous ATen
// chain (x and the weight converted to FP32, an FP32 GEMM, then the reference ops), and the
// logits alone three ways (the third keeps an FP32 copy of the weight and converts x only).
void bench_route(const std::string& preset, const std::vector<std::int64_t>& token_counts) {
  const auto layer = make_layer(preset);
  const ponder::model::Moe& moe = layer->moe;
  const at::Tensor gate_f32 = moe.gate.to(at::kFloat);
  const ponder::kernels::RouteOptions options{
      moe.config->scoring_func == "sigmoid" ? ponder::kernels::RouteScoring::kSigmoid
                                            : ponder::kernels::RouteScoring::kSoftmax,
      moe.config->topk_method == "noaux_tc" ? ponder::kernels::RouteGroups::kTopTwoSum
                                            : ponder::kernels::RouteGroups::kNone,
      moe.config->n_group,
      moe.config->topk_group,
      moe.config->num_experts_per_tok,
      moe.config->norm_topk_prob,
      moe.config->routed_scaling_factor};
  fmt::print(
      "\n{} routing: ms per call (bursts of 20 calls)\n{:>6} | {:>9} {:>9} {:>6} | {:>9} "
      "{:>9} {:>9} {:>9}\n",
      preset, "tokens", "old route", "new route", "ratio", "fp32 gemm", "bf16->f32", "f32 wt",
      "kernel");
  for (const std::int64_t t : token_counts) {
    const at::Tensor x = at::randn({t, layer->config.hidden_size}, moe.gate.options());
    const auto old_logits = [&] { return at::linear(x.to(at::kFloat), moe.gate.to(at::kFloat)); };
    const at::Tensor logits = old_logits();
    const auto old_route = [&] {
      return ponder::kernels::route_experts_reference(old_logits(), moe.correction_bias, options)
          .weights;
    };
    const double old_ms = burst_seconds(old_route, 5) * 1e3;
    const double new_ms = burst_seconds([&] { return moe.route(x).weights; }, 5) * 1e3;
    const double fp32 = burst_seconds(old_logits, 5) * 1e3;
    const double bf16 =
        burst_seconds([&] { return ponder::kernels::router_logits(x, moe.gate); }, 5) * 1e3;
    const double f32_weight =
        burst_seconds([&] { return at::linear(x.to(at::kFloat), gate_f32); }, 5) * 1e3;
    const double kernel =
        burst_seconds(
            [&] {
              return ponder::kernels::route_experts_cuda(logits, moe.correction_bias, options)
                  .weights;
            },
            5) *
        1e3;
    fmt::print("{:>6} | {:>9.4f} {:>9.4f} {:>5.2f}x | {:>9.4f} {:>9.4f} {:>9.4f} {:>9.4f}\n", t,
               old_ms, new_ms, old_ms / new_ms, fp32, bf16, f32_weight, kernel);
  }
}

void bench_shape(const std::string& preset, const std::vector<std::int64_t>& token_counts) {
  const auto layer = make_layer(preset);
  const ModelConfig& c = layer->config;
  const std::int64_t h = c.hidden_size, inner = c.moe_intermediate_size;
  const std::int64_t k = c.num_experts_per_tok;
  const auto opts = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  // Dense pair of the routed experts' FLOPs: [T, h] x [h, 2 k inner], then [T, k inner] x [k inner,
  // h]
  const at::Tensor w1 = at::randn({h, 2 * k * inner}, opts), w2 = at::randn({k * inner, h}, opts);
  fmt::print("\n{}: hidden {}, {} experts x inner {}, top-{}, {} shared (BF16)\n", preset, h,
             c.n_routed_experts, inner, k, c.n_shared_experts);
  fmt::print(
      "{:>6} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} | {:>11} {:>7} {:>7} | {:>8} {:>8} "
      "{:>8} {:>8} {:>7} | {:>9} {:>9} {:>9}\n",
      "tokens", "dense ms", "grouped", "few-rows", "wgmma", "large", "loop", "layer", "layer tok/s",
      "TFLOP/s", "lg TF/s", "vs dense", "few/dns", "wg/dns", "lg/dns", "vs loop", "exp. GB/s",
      "few GB/s", "wg GB/s");
  for (const std::int64_t t : token_counts) {
    const at::Tensor x = at::randn({t, h}, opts);
    const auto routing = layer->moe.route(x);
    const int reps = t <= 1024 ? 20 : 5;
    const double dense =
        median_seconds([&] { return at::mm(at::mm(x, w1).narrow(1, 0, k * inner), w2); }, reps);
    using ponder::model::ExpertGemm;
    const double grouped = median_seconds(
        [&] { return layer->moe.routed_grouped(x, routing, ExpertGemm::kTorchGrouped); }, reps);
    const double few = median_seconds(
        [&] { return layer->moe.routed_grouped(x, routing, ExpertGemm::kFewRows); }, reps);
    const double wgmma = median_seconds(
        [&] { return layer->moe.routed_grouped(x, routing, ExpertGemm::kWgmma); }, reps);
    const double large = median_seconds(
        [&] { return layer->moe.routed_grouped(x, routing, ExpertGemm::kWgmmaLarge); }, reps);
    // the large-tile kernel's two GEMMs alone on rows already sorted, with the routing's group
    // sizes
    const at::Tensor ends =
        at::bincount(routing.experts.reshape(-1), {}, c.n_routed_experts).cumsum(0).to(at::kInt);
    const at::Tensor sorted_rows = at::randn({t * k, h}, opts);
    const double gemms = median_seconds(
        [&] {
          using ponder::kernels::GroupedKernel;
          const auto& w = *layer->moe.stacked;
          const at::Tensor hidden = ponder::kernels::grouped_gemm_cuda(
              sorted_rows, w.gate_up, ends, true, GroupedKernel::kWgmmaLarge);
          return ponder::kernels::grouped_gemm_cuda(hidden, w.down, ends, false,
                                                    GroupedKernel::kWgmmaLarge);
        },
        reps);
    // the same with torch's grouped GEMMs and the SwiGLU kernel between them
    const double torch_gemms = median_seconds(
        [&] {
          const auto& w = *layer->moe.stacked;
          const at::Tensor gate_up = at::_grouped_mm(sorted_rows, w.gate_up.transpose(1, 2), ends);
          const at::Tensor hidden =
              ponder::kernels::swiglu(gate_up.narrow(1, 0, inner), gate_up.narrow(1, inner, inner));
          return at::_grouped_mm(hidden, w.down.transpose(1, 2), ends);
        },
        reps);
    // a kernel's largest difference to torch's grouped GEMM, relative to the largest output
    const at::Tensor torch_out = layer->moe.routed_grouped(x, routing, ExpertGemm::kTorchGrouped);
    const auto error_of = [&](ExpertGemm gemm) {
      return ((layer->moe.routed_grouped(x, routing, gemm) - torch_out).abs().max() /
              torch_out.abs().max())
          .item<double>();
    };
    const double loop = median_seconds([&] { return layer->moe.routed_loop(x, routing); }, 3);
    const double full = median_seconds([&] { return layer->moe(x); }, reps);
    const double flops = 6.0 * static_cast<double>(t * k * h * inner);
    // weights of the experts that received at least one token, read once
    const double touched = at::bincount(routing.experts.reshape(-1), {}, c.n_routed_experts)
                               .gt(0)
                               .sum()
                               .item<double>();
    const double expert_bytes = touched * 3.0 * static_cast<double>(h * inner) * 2;
    fmt::print(
        "{:>6} | {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} {:>8.3f} | {:>11.0f} "
        "{:>7.1f} {:>7.1f} | {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>6.1f}x | {:>9.0f} {:>9.0f} "
        "{:>9.0f}\n",
        t, dense * 1e3, grouped * 1e3, few * 1e3, wgmma * 1e3, large * 1e3, loop * 1e3, full * 1e3,
        static_cast<double>(t) / full, flops / grouped / 1e12, flops / large / 1e12,
        dense / grouped, dense / few, dense / wgmma, dense / large, loop / grouped,
        expert_bytes / grouped / 1e9, expert_bytes / few / 1e9, expert_bytes / wgmma / 1e9);
    fmt::print(
        "{:>6} | vs torch grouped, max |difference| / max |output|: wgmma {:.1e}, large {:.1e}; "
        "dense {:.1f} TFLOP/s\n{:>6} | GEMMs alone on sorted rows: large tiles {:.3f} ms, {:.1f} "
        "TFLOP/s, {:.2f} of dense; torch grouped + SwiGLU {:.3f} ms, {:.1f} TFLOP/s, {:.2f} of "
        "dense\n",
        t, error_of(ExpertGemm::kWgmma), error_of(ExpertGemm::kWgmmaLarge), flops / dense / 1e12, t,
        gemms * 1e3, flops / gemms / 1e12, dense / gemms, torch_gemms * 1e3,
        flops / torch_gemms / 1e12, dense / torch_gemms);
    const ExpertGemm picked = ponder::model::pick_expert_gemm(x, k, *layer->moe.stacked);
    fmt::print("{:>6} | {:.0f} rows per expert, the automatic choice: {}\n", t,
               static_cast<double>(t * k) / static_cast<double>(c.n_routed_experts),
               picked == ExpertGemm::kWgmma        ? "wgmma"
               : picked == ExpertGemm::kWgmmaLarge ? "large"
                                                   : "torch grouped");
  }
}

// Few-rows wgmma against the large tiles under a balanced router (token t takes experts t k ..
// t k + k - 1 mod E, so every expert gets T k / E rows), the routing a trained model's load
// balancing aims at; the random router above hits fewer experts with more rows each.
void bench_balanced(const std::string& preset, const std::vector<std::int64_t>& token_counts) {
  const auto layer = make_layer(preset);
  const ModelConfig& c = layer->config;
  const std::int64_t k = c.num_experts_per_tok, experts = c.n_routed_experts;
  const auto opts = at::TensorOptions(at::kBFloat16).device(at::kCUDA);
  fmt::print("\n{}, balanced router\n{:>6} | {:>8} {:>8} {:>8} | {}\n", preset, "tokens",
             "rows/exp", "wgmma ms", "large ms", "the automatic choice");
  using ponder::model::ExpertGemm;
  for (const std::int64_t t : token_counts) {
    if (t * k > 64 * experts) continue;  // past the few-rows regime
    const at::Tensor x = at::randn({t, c.hidden_size}, opts);
    const at::Tensor slots = at::arange(t * k, opts.dtype(at::kLong)).view({t, k});
    const ponder::model::MoeRouting routing{
        at::full({t, k}, 1.0 / static_cast<double>(k), opts.dtype(at::kFloat)),
        slots.remainder(experts), at::Tensor()};
    const auto time = [&](ExpertGemm gemm) {
      return median_seconds([&] { return layer->moe.routed_grouped(x, routing, gemm); }, 20) * 1e3;
    };
    const ExpertGemm picked = ponder::model::pick_expert_gemm(x, k, *layer->moe.stacked);
    fmt::print("{:>6} | {:>8.1f} {:>8.3f} {:>8.3f} | {}\n", t,
               static_cast<double>(t * k) / static_cast<double>(experts), time(ExpertGemm::kWgmma),
               time(ExpertGemm::kWgmmaLarge), picked == ExpertGemm::kWgmma ? "wgmma" : "large");
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // logs show progress when redirected
  if (!at::hasCUDA()) {
    fmt::print(stderr, "bench_moe: no CUDA device\n");
    return 1;
  }
  std::vector<std::int64_t> tokens;
  for (int i = 1; i < argc; ++i) tokens.push_back(std::atoll(argv[i]));
  if (tokens.empty()) tokens = {256, 4096, 16384};
  c10::NoGradGuard no_grad;
  fmt::print(
      "ms = median wall time of a synced call; dense = two BF16 GEMMs with the routed experts' "
      "FLOPs (6 T k hidden inner); grouped/few-rows/wgmma/large/loop = routed experts only "
      "(routing given, permutation and combine included) through torch's grouped GEMM, "
      "kernels::grouped_gemm (SwiGLU fused; few-rows = cp.async + mma.sync, wgmma = TMA + wgmma "
      "for few rows, large = TMA + wgmma in 128 x 256 tiles) or the per-expert loop; layer = "
      "routing + routed experts (the automatic choice) + "
      "shared experts; TFLOP/s of the grouped path and (lg TF/s) the large-tile path; vs dense "
      "= dense ms / grouped ms, few/dns, wg/dns, lg/dns = dense ms / few-rows, wgmma, large ms; "
      "GB/s = weights of the experts hit / time\n");
  try {
    if (std::getenv("PONDER_BENCH_ROUTE_ONLY")) {
      bench_route("deepseek-v2-lite", tokens);
      bench_route("deepseek-v3", tokens);
      return 0;
    }
    bench_shape("deepseek-v2-lite", tokens);
    bench_shape("deepseek-v3", tokens);
    bench_balanced("deepseek-v2-lite", tokens);
    bench_balanced("deepseek-v3", tokens);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_moe: {}\n", e.what());
    return 1;
  }
  return 0;
}
