// Times each CUDA kernel against the ATen path it replaces on the current GPU (CUDA events, median
// of repeats after warm-up) and prints achieved bandwidth against a device-to-device copy.
// Usage: bench_kernels [rms_norm|elementwise|sampling|logprobs|dense_decode|mla_decode ...] [quick:
// no baselines, no ranges sweep] [HEADSxBATCHxCONTEXT ...: only those MLA decode shapes]. Each MLA
// shape also runs on an FP8 latent cache (the same entries quantised).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "bench/common/cuda_timing.h"
#include "bench/kernels/cublaslt_tuned.h"
#include "kernels/cuda_graph.h"
#include "kernels/dense_gemm.h"
#include "kernels/elementwise.h"
#include "kernels/mla_decode.h"
#include "kernels/mla_decode_kernel.h"
#include "kernels/moe_gemm.h"
#include "kernels/rms_norm.h"
#include "kernels/sampling.h"

namespace ponder::kernels {
namespace {

using bench::median_ms;

// Device-to-device copy of 4 GiB; bytes read plus bytes written per second.
double copy_bandwidth_gbs() {
  const std::int64_t bytes = std::int64_t{4} << 30;
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kByte);
  at::Tensor src = at::randint(0, 255, {bytes}, opts), dst = at::empty({bytes}, opts);
  const double ms = median_ms([&] { dst.copy_(src); });
  return 2.0 * bytes / ms / 1e6;
}

void report(const std::string& what, double aten_ms, double kernel_ms, double bytes,
            double copy_gbs) {
  const double gbs = bytes / kernel_ms / 1e6;
  fmt::print("{:<44} aten {:8.3f} ms  kernel {:8.3f} ms  x{:6.2f}  {:5.0f} GB/s  {:.2f} of copy\n",
             what, aten_ms, kernel_ms, aten_ms / kernel_ms, gbs, gbs / copy_gbs);
}

at::TensorOptions gpu(at::ScalarType dtype) {
  return at::TensorOptions().device(at::kCUDA).dtype(dtype);
}

// A dense BF16 GEMM (8192 cubed, cuBLAS through at::mm): the compute roofline the many-head MLA
// decode is held against, measured once per run.
double dense_bf16_tflops() {
  static const double tflops = [] {
    const std::int64_t n = 8192;
    const at::Tensor a = at::randn({n, n}, gpu(at::kBFloat16)),
                     b = at::randn({n, n}, gpu(at::kBFloat16));
    return 2.0 * n * n * n / median_ms([&] { at::mm(a, b); }) / 1e9;
  }();
  return tflops;
}

void bench_rms_norm(double copy_gbs) {
  for (const auto dtype : {at::kBFloat16, at::kFloat})
    for (const std::int64_t cols : {2048, 7168}) {
      const std::int64_t rows = (std::int64_t{1} << 28) / cols;  // 256M elements
      const at::Tensor x = at::randn({rows, cols}, gpu(dtype)), w = at::randn({cols}, gpu(dtype));
      const at::Tensor r = at::randn({rows, cols}, gpu(dtype));
      const std::string shape = fmt::format("{} [{}, {}]", c10::toString(dtype), rows, cols);
      report("rms_norm " + shape, median_ms([&] { rms_norm_reference(x, w, 1e-6); }),
             median_ms([&] { rms_norm_cuda(x, w, 1e-6); }), 2.0 * x.nbytes(), copy_gbs);
      report("add_rms_norm " + shape, median_ms([&] { add_rms_norm_reference(x, r, w, 1e-6); }),
             median_ms([&] { add_rms_norm_cuda(x, r, w, 1e-6); }), 4.0 * x.nbytes(), copy_gbs);
    }
}

void bench_elementwise(double copy_gbs) {
  const at::Tensor gate_up = at::randn({16384, 2 * 10944}, gpu(at::kBFloat16));
  const at::Tensor gate = gate_up.narrow(1, 0, 10944), up = gate_up.narrow(1, 10944, 10944);
  report("swiglu bf16 [16384, 10944] (fused gate_up)",
         median_ms([&] { swiglu_reference(gate, up); }), median_ms([&] { swiglu_cuda(gate, up); }),
         1.5 * gate_up.nbytes(), copy_gbs);
  const at::Tensor q = at::randn({16384, 128, 192}, gpu(at::kBFloat16)), x = q.narrow(-1, 128, 64);
  const at::Tensor angle = at::rand({16384, 32}, gpu(at::kFloat)) * 6.28;
  const at::Tensor cos = angle.cos(), sin = angle.sin();
  const double bytes = 2.0 * x.numel() * 2 + 2.0 * cos.nbytes();
  for (const bool interleaved : {false, true})
    report(
        fmt::format("rope bf16 [16384, 128, 64 of 192] {}", interleaved ? "interleaved" : "half"),
        median_ms([&] { rope_reference(x, cos, sin, interleaved); }),
        median_ms([&] { rope_cuda(x, cos, sin, interleaved); }), bytes, copy_gbs);
}

// The usual ATen sampler: softmax, full descending sort of each row, cumulative sums for the
// filters, then the draw by binary search; per-row settings as [rows, 1] tensors.
at::Tensor aten_sample(const at::Tensor& logits, const at::Tensor& temperature,
                       const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& min_p,
                       const at::Tensor& uniform) {
  const at::Tensor probs = (logits.to(at::kFloat) / temperature).softmax(-1);
  const auto [sorted, order] = probs.sort(-1, /*descending=*/true);
  const at::Tensor rank = at::arange(logits.size(1), logits.options().dtype(at::kLong));
  at::Tensor keep = rank.unsqueeze(0) < at::where(top_k > 0, top_k, logits.size(1));
  at::Tensor kept = sorted * keep;
  const at::Tensor cum = kept.cumsum(-1);
  keep = keep & ((cum - kept) < top_p * cum.narrow(1, cum.size(1) - 1, 1));
  keep = keep & (sorted >= min_p * sorted.narrow(1, 0, 1));
  const at::Tensor cdf = (sorted * keep).cumsum(-1);
  const at::Tensor pick =
      at::searchsorted(cdf, uniform.unsqueeze(1) * cdf.narrow(1, cdf.size(1) - 1, 1), false, true)
          .clamp_max(logits.size(1) - 1);
  return order.gather(1, pick);
}

void bench_sampling(double copy_gbs) {
  constexpr std::int64_t kVocab = 129280;
  for (const std::int64_t rows : {1, 64, 256})
    for (const bool filtered : {true, false}) {
      const at::Tensor logits = at::randn({rows, kVocab}, gpu(at::kFloat)) * 3;
      const SamplingBatch b{at::full({rows}, 0.8, gpu(at::kFloat)),
                            at::full({rows}, filtered ? 50 : 0, gpu(at::kLong)),
                            at::full({rows}, filtered ? 0.9 : 1.0, gpu(at::kFloat)),
                            at::full({rows}, filtered ? 0.05 : 0.0, gpu(at::kFloat)),
                            at::rand({rows}, gpu(at::kDouble)),
                            {}};
      report(fmt::format("sample fp32 [{}, {}] {}", rows, kVocab,
                         filtered ? "T .8 k 50 p .9 min-p .05" : "T .8 no filter"),
             median_ms([&] {
               aten_sample(logits, b.temperature.unsqueeze(1), b.top_k.unsqueeze(1),
                           b.top_p.unsqueeze(1), b.min_p.unsqueeze(1), b.uniform.to(at::kFloat));
             }),
             median_ms([&] { sample_cuda(logits, b); }), logits.nbytes(), copy_gbs);
    }
}

void bench_logprobs(double copy_gbs) {
  constexpr std::int64_t kVocab = 129280, kTokens = 4096, kHidden = 2048;
  for (const auto dtype : {at::kBFloat16, at::kFloat}) {
    const at::Tensor h = at::randn({kTokens, kHidden}, gpu(dtype));
    const at::Tensor w = at::randn({kVocab, kHidden}, gpu(dtype)) * 0.05;
    const at::Tensor targets = at::randint(0, kVocab, {kTokens}, gpu(at::kLong));
    report(fmt::format("token_logprobs {} [{} x {}] vocab {}", c10::toString(dtype), kTokens,
                       kHidden, kVocab),
           median_ms([&] { token_logprobs_reference(h, w, targets); }, 1, 5),
           median_ms([&] { token_logprobs_cuda(h, w, targets); }, 1, 5), w.nbytes(), copy_gbs);
  }
}

// The expanded (non-absorbed) MLA path on the same cache: gather the pages, up-project the
// latent to per-head K (128 dims + the shared 64 RoPE dims) and V (128 dims), then SDPA.
at::Tensor expanded_sdpa(const at::Tensor& q, const at::Tensor& cache, const at::Tensor& tables,
                         const at::Tensor& w_ukv, double scale) {
  const std::int64_t batch = q.size(0), heads = q.size(1), context = tables.size(1) * 64;
  const at::Tensor entries = cache.index_select(0, tables.reshape(-1)).view({batch, context, 576});
  const at::Tensor kv =
      at::matmul(entries.narrow(-1, 0, 512), w_ukv).view({batch, context, heads, 256});
  const at::Tensor rope =
      entries.narrow(-1, 512, 64).unsqueeze(2).expand({batch, context, heads, 64});
  const at::Tensor k = at::cat({kv.narrow(-1, 0, 128), rope}, -1).transpose(1, 2);
  const at::Tensor v = kv.narrow(-1, 128, 128).transpose(1, 2);
  return at::scaled_dot_product_attention(q.unsqueeze(2), k, v, {}, 0.0, false, scale);
}

struct MlaShape {
  std::int64_t heads, batch, context;
};

// Shapes named on the command line as HEADSxBATCHxCONTEXT (e.g. 16x64x1024); none: all of them.
std::vector<MlaShape> mla_shapes(const std::vector<std::string>& args) {
  std::vector<MlaShape> all, named;
  for (const std::int64_t heads : {16, 128})
    for (const std::int64_t batch : {64, 128})
      for (const std::int64_t context : {1024, 4096, 16384}) all.push_back({heads, batch, context});
  for (const MlaShape& m : all)
    if (std::find(args.begin(), args.end(), fmt::format("{}x{}x{}", m.heads, m.batch, m.context)) !=
        args.end())
      named.push_back(m);
  return named.empty() ? all : named;
}

// Median ms of the expanded path, or NaN where its per-head K/V would not fit comfortably.
double time_expanded(const MlaShape& m, const at::Tensor& cache, const at::Tensor& tables,
                     double scale) {
  const double expanded_bytes = 2.0 * m.batch * m.context * m.heads * (256 + 192 + 128);
  if (expanded_bytes > 48e9) return NAN;
  const at::Tensor q = at::randn({m.batch, m.heads, 192}, gpu(at::kBFloat16));
  const at::Tensor w = at::randn({512, m.heads * 256}, gpu(at::kBFloat16)) * 0.05;
  return median_ms([&] { expanded_sdpa(q, cache, tables, w, scale); }, 2, 10);
}

// A random paged BF16 latent cache (pages of 64 in shuffled order), every sequence at the same
// context, and its queries.
struct MlaCase {
  at::Tensor cache, tables, lens, q;
};

MlaCase make_mla_case(const MlaShape& m) {
  const std::int64_t per_seq = m.context / 64, pages = m.batch * per_seq;
  return {at::randn({pages, 64, 576}, gpu(at::kBFloat16)),
          at::randperm(pages, gpu(at::kLong)).view({m.batch, per_seq}),
          at::full({m.batch}, m.context, gpu(at::kLong)),
          at::randn({m.batch, m.heads, 576}, gpu(at::kBFloat16))};
}

// Median ms per call of `call`, ten calls per timing so the GPU stays busy while the host
// launches (the engine replays decode steps as CUDA graphs).
double per_call_ms(const std::function<void()>& call, int warmup = 3, int reps = 20) {
  return median_ms(
             [&] {
               for (int i = 0; i < 10; ++i) call();
             },
             warmup, reps) /
         10;
}

// Median ms per call of a device-to-device copy moving `bytes` in all (half read, half written),
// ten back-to-back per timing as the kernels: what any kernel of that working set pays in launch
// and ramp-up.
double size_matched_copy_ms(double bytes) {
  const auto n = static_cast<std::int64_t>(bytes / 2);
  const at::Tensor src = at::empty({n}, gpu(at::kByte)).fill_(1), dst = at::empty_like(src);
  return per_call_ms([&] { dst.copy_(src); });
}

// Median ms per call of ten calls recorded as one CUDA graph, as the engine replays decode steps
// (no host launch time in it).
double graph_call_ms(const std::function<void()>& call) {
  CudaGraph graph;
  graph.capture(
      [&] {
        for (int i = 0; i < 10; ++i) call();
      },
      CudaGraph::new_pool());
  return median_ms([&] { graph.replay(); }) / 10;
}

// Graph ms per call of each of `calls` (ten calls per graph, as graph_call_ms), each recorded once,
// in `rounds` rounds with the order reversed every other round, so that drift over the run (clock,
// temperature, the allocator) falls on every call alike rather than on the later ones:
// [round][call].
std::vector<std::vector<double>> graph_rounds(const std::vector<std::function<void()>>& calls,
                                              int rounds) {
  const auto pool = CudaGraph::new_pool();
  std::vector<CudaGraph> graphs(calls.size());
  for (std::size_t i = 0; i < calls.size(); ++i)
    graphs[i].capture(
        [&] {
          for (int r = 0; r < 10; ++r) calls[i]();
        },
        pool);
  std::vector<std::vector<double>> ms(rounds, std::vector<double>(calls.size()));
  for (int round = 0; round < rounds; ++round)
    for (std::size_t k = 0; k < calls.size(); ++k) {
      const std::size_t i = round % 2 == 0 ? k : calls.size() - 1 - k;
      ms[round][i] = median_ms([&] { graphs[i].replay(); }) / 10;
    }
  return ms;
}

// The median over rounds of f(round's times).
double median_of_rounds(const std::vector<std::vector<double>>& ms,
                        const std::function<double(const std::vector<double>&)>& f) {
  std::vector<double> v;
  for (const auto& round : ms) v.push_back(f(round));
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// A dense linear of the V2-Lite decode step: y [rows, n] = x [rows, k] w [n, k]^T, `per_step`
// times per decode step (27 layers, the first one dense).
struct DenseShape {
  const char* name;
  std::int64_t n, k, per_step;
};

struct LtTuned {
  double first_ms, best_ms, error;
  int tried, best;
};

// cuBLASLt with a 32 MiB workspace: the heuristic's first of 16 candidates and the fastest of
// them (graph-timed), with the fastest one's error against at::linear.
LtTuned lt_tuned(const at::Tensor& x, const at::Tensor& w) {
  const bench::CublasLtGemm plan(x, w, 16, std::int64_t{32} << 20);
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  LtTuned out{0, 0, 0, plan.algorithms(), 0};
  for (int i = 0; i < plan.algorithms(); ++i) {
    plan.run(x, w, y, i);
    const double ms = graph_call_ms([&] { plan.run(x, w, y, i); });
    if (i == 0) out.first_ms = ms;
    if (i == 0 || ms < out.best_ms) out.best_ms = ms, out.best = i;
  }
  plan.run(x, w, y, out.best);
  const at::Tensor want = at::linear(x, w).to(at::kDouble);
  out.error = ((y.to(at::kDouble) - want).norm() / want.norm()).item<double>();
  return out;
}

// Gate + up then SwiGLU as the model runs it (one GEMM, the SwiGLU kernel) against the wgmma
// grouped kernel with SwiGLU fused (one group).
void bench_swiglu_fused(const at::Tensor& x, const at::Tensor& w) {
  const std::int64_t half = w.size(0) / 2;
  const double model_ms = graph_call_ms([&] {
    const at::Tensor y = at::linear(x, w);
    swiglu(y.narrow(1, 0, half), y.narrow(1, half, half));
  });
  std::string line =
      fmt::format("  gate+up+swiglu: cublas + swiglu kernel {:7.2f} us", model_ms * 1e3);
  const at::Tensor ends = at::full({1}, x.size(0), x.options().dtype(at::kInt));
  for (const GroupedKernel g : {GroupedKernel::kWgmma, GroupedKernel::kWgmmaLarge}) {
    if (!grouped_gemm_supported(x, w.unsqueeze(0), g)) continue;
    const double ms = graph_call_ms([&] { grouped_gemm_cuda(x, w.unsqueeze(0), ends, true, g); });
    line +=
        fmt::format("  {} fused {:7.2f} us x{:.2f}",
                    g == GroupedKernel::kWgmma ? "wgmma" : "wgmma_large", ms * 1e3, model_ms / ms);
  }
  fmt::print("{}\n", line);
}

// The decode step's BF16 linears at M = 64, 128 and 256 rows (sequences) through each GEMM that
// kernels::dense_gemm runs and cuBLASLt's own candidates (graph-timed, as the engine replays
// steps), against the bytes they move (weights + activations at the copy bandwidth); then per M
// the step's sum through cuBLAS and through the fastest GEMM of each shape. cuBLAS = at::linear as
// the model calls it (lm_head: the model's at::mm to FP32 logits is timed as a BF16 linear).
void bench_dense_decode(double copy_gbs) {
  const DenseShape shapes[] = {{"q_proj+kv_a_proj", 3072 + 576, 2048, 27},
                               {"o_proj", 2048, 2048, 27},
                               {"shared gate+up", 2 * 2816, 2048, 26},
                               {"shared down", 2048, 2816, 26},
                               {"dense gate+up", 2 * 10944, 2048, 1},
                               {"dense down", 2048, 10944, 1},
                               {"lm_head", 102400, 2048, 1}};
  const DenseGemm gemms[] = {DenseGemm::kCublas, DenseGemm::kCublasLt, DenseGemm::kWgmma,
                             DenseGemm::kWgmmaLarge};
  for (const std::int64_t m : {64, 128, 256}) {
    double cublas_step = 0, best_step = 0;
    for (const DenseShape& s : shapes) {
      const at::Tensor x = at::randn({m, s.k}, gpu(at::kBFloat16)),
                       w = at::randn({s.n, s.k}, gpu(at::kBFloat16)) * 0.05;
      const double bytes = 2.0 * (s.n * s.k + m * s.k + m * s.n), flop = 2.0 * m * s.n * s.k;
      std::string line = fmt::format("dense_decode M {:3} {:<17} n {:6} k {:5} roofline {:7.2f} us",
                                     m, s.name, s.n, s.k, bytes / copy_gbs / 1e3);
      double cublas_ms = 0, best_ms = 0;
      DenseGemm best = DenseGemm::kCublas;
      for (const DenseGemm g : gemms) {
        if (!dense_gemm_supported(x, w, g)) continue;
        dense_gemm(x, w, g);  // handles and workspaces before the capture
        const double ms = graph_call_ms([&] { dense_gemm(x, w, g); });
        if (g == DenseGemm::kCublas) cublas_ms = ms;
        if (best_ms == 0 || ms < best_ms) best_ms = ms, best = g;
        line +=
            fmt::format("  {} {:7.2f} us {:.2f} of copy {:4.0f} TF/s x{:.2f}", dense_gemm_name(g),
                        ms * 1e3, bytes / ms / 1e6 / copy_gbs, flop / ms / 1e9, cublas_ms / ms);
      }
      const LtTuned lt = lt_tuned(x, w);
      line += fmt::format(
          "  lt heuristic #0 {:7.2f} us, fastest of {} #{} {:7.2f} us x{:.2f} (rel err {:.1e})",
          lt.first_ms * 1e3, lt.tried, lt.best, lt.best_ms * 1e3, cublas_ms / lt.best_ms, lt.error);
      cublas_step += s.per_step * cublas_ms;
      best_step += s.per_step * std::min(best_ms, lt.best_ms);
      fmt::print("{}  best {}\n", line, lt.best_ms < best_ms ? "lt tuned" : dense_gemm_name(best));
      if (std::string(s.name).ends_with("gate+up")) bench_swiglu_fused(x, w);
    }
    fmt::print(
        "dense_decode M {:3} step: cublas {:.3f} ms, fastest per shape {:.3f} ms (x{:.2f})\n", m,
        cublas_step, best_step, cublas_step / best_step);
  }
}

// Per-call ms of the kernel at several ranges per sequence (the default picks one).
std::string splits_sweep(const std::function<void(int)>& call) {
  std::string line;
  for (const int splits : {1, 2, 3, 4, 6, 8, 16})
    line += fmt::format("  {}: {:.4f}", splits, per_call_ms([&] { call(splits); }));
  return line;
}

// The kernel over the same entries as an FP8 cache (656 bytes a token: bytes read are counted
// that way), against the ATen reference over those pages dequantised, and its speed-up over the
// BF16 kernel's `bf16_ms` from the same run (64+ heads: also the mma.sync kernel over FP8 pages).
void bench_mla_fp8(const MlaShape& m, const at::Tensor& cache, const at::Tensor& tables,
                   const at::Tensor& lens, const at::Tensor& q, double bf16_ms, double copy_gbs) {
  const double scale = 1.0 / std::sqrt(192.0);
  const at::Tensor flat = cache.view({-1, 576});
  const at::Tensor fp8 = mla_cache_quantize(flat.narrow(1, 0, 512), flat.narrow(1, 512, 64))
                             .view({cache.size(0), 64, kMlaFp8Entry});
  const at::Tensor pages =
      mla_cache_dequantize(fp8, 512, at::kBFloat16).index_select(0, tables.reshape(-1));
  const at::Tensor want =
      mla_decode_reference(q, pages.view({m.batch, m.context, 576}),
                           at::ones({m.batch, m.context}, gpu(at::kBool)), scale, 512)
          .to(at::kFloat);
  const at::Tensor got = mla_decode_cuda(q, fp8, tables, lens, scale).to(at::kFloat);
  const double err = (got - want).norm().item<double>() / want.norm().item<double>();
  const auto call = [&] { mla_decode_cuda(q, fp8, tables, lens, scale, 0, false); };
  const double ms = per_call_ms(call), graph_ms = graph_call_ms(call);
  const double bytes = 1.0 * fp8.nbytes() + q.nbytes() + m.batch * m.heads * 512.0 * 2;
  fmt::print(
      "  fp8 cache (656 B a token) kernel {:.4f} ms  {:.0f} GB/s  {:.2f} of copy  graph {:.4f} ms "
      "({:.2f} of copy)  rel err {:.1e} vs the reference over the dequantised pages  x{:.2f} vs "
      "the bf16-cache kernel\n",
      ms, bytes / ms / 1e6, bytes / ms / 1e6 / copy_gbs, graph_ms,
      bytes / graph_ms / 1e6 / copy_gbs, err, bf16_ms / ms);
  if (m.heads % 64 != 0) return;
  const double mma_ms =
      per_call_ms([&] { mla_decode_cuda(q, fp8, tables, lens, scale, 0, false, false); });
  fmt::print("  fp8 cache on the mma.sync kernel {:.4f} ms  x{:.2f} vs the bf16-cache kernel\n",
             mma_ms, bf16_ms / mma_ms);
}

// A decode step's query pieces as the engine has them for `batch` sequences at contexts `lens`
// (16 heads): q_nope and the unrotated q_rope (views of the projection [batch, 16, 192]), W_UK (a
// slice of kv_b_proj's weight) and default RoPE tables at the new tokens' positions.
struct QueryPieces {
  at::Tensor q_nope, q_rope, w_uk, cos, sin;

  QueryPieces(std::int64_t batch, const at::Tensor& lens) {
    const auto bf16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
    const at::Tensor proj = at::randn({batch, 16, 192}, bf16);
    q_nope = proj.narrow(-1, 0, 128);
    q_rope = proj.narrow(-1, 128, 64);
    w_uk = (at::randn({16, 256, 512}, bf16) * 0.05).narrow(1, 0, 128);
    const at::Tensor inv_freq =
        at::pow(10000.0, at::arange(0, 64, 2, bf16.dtype(at::kFloat)) / -64.0);
    const at::Tensor angles = (lens - 1).to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
    cos = angles.cos();
    sin = angles.sin();
  }
  // In place (mla_decode_query_cuda: GEMM into the columns, the RoPE kernel last).
  void assemble(const at::Tensor& query, bool trigger_decode = true) const {
    mla_decode_query_cuda(query, q_nope, w_uk, q_rope, cos, sin, trigger_decode);
  }
  // As the engine did before: the absorbing einsum, the RoPE kernel, the cat.
  at::Tensor by_cat() const {
    return at::cat({at::einsum("thd,hdc->thc", {q_nope, w_uk}), rope_cuda(q_rope, cos, sin, true)},
                   -1);
  }
};

// The 16-head kernel with the engine's opt-in early first tile (BF16 pages; read before the PDL
// wait) against the default path timed the same way in this run: back to back (the previous
// kernel is the same decode, which writes none of what it reads early), behind the query's cat
// (the engine's steps with prefill rows; the cat does not trigger its dependents) and behind the
// query's RoPE kernel (decode-only steps: mla_decode_query_cuda, GEMM then RoPE, in the timing).
// The six graphs run in alternating rounds (graph_rounds): ms are medians over the rounds, each
// ratio the median of the rounds' ratios, and every round's early / default ratios are printed.
void bench_mla_early(const at::Tensor& cache, const at::Tensor& tables, const at::Tensor& lens,
                     const at::Tensor& q, double bytes, double copy_gbs) {
  const double scale = 1.0 / std::sqrt(192.0);
  const at::Tensor q_latent = q.narrow(-1, 0, 512).contiguous(),
                   q_rope = q.narrow(-1, 512, 64).contiguous();
  const QueryPieces pieces(q.size(0), lens);
  const at::Tensor assembled = at::empty_like(q);
  enum Before { kDecode, kCat, kRope, kBefores };
  std::vector<std::function<void()>> calls;  // calls[2 * before + early]
  for (const Before before : {kDecode, kCat, kRope})
    for (const bool early : {false, true})
      calls.emplace_back([&, before, early] {
        at::Tensor query = q;
        if (before == kCat) query = at::cat({q_latent, q_rope}, -1);
        if (before == kRope) pieces.assemble(query = assembled);
        mla_decode_cuda(query, cache, tables, lens, scale, 0, false, true, early);
      });
  const bool same = mla_decode_cuda(q, cache, tables, lens, scale, 0, false, true, true)
                        .equal(mla_decode_cuda(q, cache, tables, lens, scale, 0, false));
  const auto ms = graph_rounds(calls, 4);
  std::array<double, 2 * kBefores> med{};
  std::array<double, kBefores> ratio{};
  std::string rounds;
  for (int i = 0; i < 2 * kBefores; ++i)
    med[i] = median_of_rounds(ms, [i](const std::vector<double>& r) { return r[i]; });
  for (int b = 0; b < kBefores; ++b)
    ratio[b] =
        median_of_rounds(ms, [b](const std::vector<double>& r) { return r[2 * b + 1] / r[2 * b]; });
  for (const auto& r : ms)
    rounds += fmt::format(" x{:.3f} / x{:.3f} / x{:.3f};", r[1] / r[0], r[3] / r[2], r[5] / r[4]);
  fmt::print(
      "  early first tile: graph {:.4f} ms ({:.2f} of copy) vs default {:.4f} ms ({:.2f} of copy) "
      "x{:.3f}; behind the query's cat {:.4f} ms vs {:.4f} ms x{:.3f}; behind the query's RoPE "
      "kernel (query GEMM + RoPE + decode) {:.4f} ms vs {:.4f} ms x{:.3f}; output {} the "
      "default's; rounds (back to back / cat / RoPE):{}\n",
      med[1], bytes / med[1] / 1e6 / copy_gbs, med[0], bytes / med[0] / 1e6 / copy_gbs, ratio[0],
      med[3], med[2], ratio[1], med[5], med[4], ratio[2],
      same ? "bit-identical to" : "DIFFERS from", rounds);
}

// The query's RoPE kernel with and without its early trigger, and the cat before it, each with
// the default decode kernel (no early tile): three rounds, alternating (graph_rounds), so that
// drift shows.
void bench_rope_trigger(const QueryPieces& pieces, const at::Tensor& cache,
                        const at::Tensor& tables, const at::Tensor& lens) {
  const double scale = 1.0 / std::sqrt(192.0);
  const at::Tensor assembled = at::empty({lens.size(0), 16, 576}, cache.options());
  const auto in_place = [&](bool trigger) {
    return [&, trigger] {
      pieces.assemble(assembled, trigger);
      mla_decode_cuda(assembled, cache, tables, lens, scale, 0, false);
    };
  };
  std::string rounds;
  for (const auto& r : graph_rounds(
           {[&] { mla_decode_cuda(pieces.by_cat(), cache, tables, lens, scale, 0, false); },
            in_place(true), in_place(false)},
           3))
    rounds += fmt::format(" {:.4f} / {:.4f} / {:.4f};", r[0], r[1], r[2]);
  fmt::print("  query + default decode, cat / RoPE triggering / RoPE not triggering (ms):{}\n",
             rounds);
}

// A decode-only step's query and decode (16 heads, graph): the query assembled in place with the
// early first tile (the engine now) against the einsum, RoPE and cat with the default kernel (the
// engine before), and the query alone both ways and as its pieces without the cat (an in-place
// query as fast as its pieces: the strided GEMM output cost no copy).
void bench_mla_query(const at::Tensor& cache, const at::Tensor& tables, const at::Tensor& lens,
                     const at::Tensor& q) {
  const double scale = 1.0 / std::sqrt(192.0);
  const QueryPieces pieces(q.size(0), lens);
  const at::Tensor assembled = at::empty_like(q);
  const auto step = [&](bool now) {
    if (now) pieces.assemble(assembled);
    return mla_decode_cuda(now ? assembled : pieces.by_cat(), cache, tables, lens, scale, 0, false,
                           true, now);
  };
  const bool same = step(true).equal(step(false)) && assembled.equal(pieces.by_cat());
  const double in_place = graph_call_ms([&] { pieces.assemble(assembled); });
  const double by_cat = graph_call_ms([&] { pieces.by_cat(); });
  const double alone = graph_call_ms([&] {
    at::einsum("thd,hdc->thc", {pieces.q_nope, pieces.w_uk});
    rope_cuda(pieces.q_rope, pieces.cos, pieces.sin, true);
  });
  const double now = graph_call_ms([&] { step(true); }),
               before = graph_call_ms([&] { step(false); });
  bench_rope_trigger(pieces, cache, tables, lens);
  fmt::print(
      "  decode query: in place {:.4f} ms vs einsum + RoPE + cat {:.4f} ms x{:.3f} (einsum + RoPE "
      "alone {:.4f} ms); query + decode {:.4f} ms vs {:.4f} ms x{:.3f}; query and output {} the "
      "earlier path's\n",
      in_place, by_cat, in_place / by_cat, alone, now, before, now / before,
      same ? "bit-identical to" : "DIFFER from");
}

// MLA decode of one shape against its baselines: the model's absorbed ATen path (gather pages,
// two batched GEMMs) and the expanded-K/V SDPA path (skipped when `quick`, as the ranges sweep).
// Bytes: the cache and queries read, the output written once. The kernel is timed as the engine
// calls it, the page check (one device sync) once per step rather than per call; "checked" is a
// single call with it; "size-matched copy": a copy moving the same bytes, timed the same way.
void bench_mla_shape(const MlaShape& m, double copy_gbs, bool quick) {
  const auto [heads, batch, context] = m;
  const auto [cache, tables, lens, q] = make_mla_case(m);
  const at::Tensor valid = at::ones({batch, context}, gpu(at::kBool));
  const double scale = 1.0 / std::sqrt(192.0);
  const double bytes = 1.0 * cache.nbytes() + q.nbytes() + batch * heads * 512.0 * 2;
  const auto aten = [&] {
    return mla_decode_reference(
        q, cache.index_select(0, tables.reshape(-1)).view({batch, context, 576}), valid, scale,
        512);
  };
  const at::Tensor want = aten().to(at::kFloat);
  const auto rel_err = [&](const at::Tensor& got) {
    return (got.to(at::kFloat) - want).norm().item<double>() / want.norm().item<double>();
  };
  const double err = rel_err(mla_decode_cuda(q, cache, tables, lens, scale));
  const double aten_ms = quick ? NAN : per_call_ms(aten, 1, 5);
  const double sdpa_ms = quick ? NAN : time_expanded(m, cache, tables, scale);
  const auto call = [&] { mla_decode_cuda(q, cache, tables, lens, scale, 0, false); };
  const double ms = per_call_ms(call);
  const double checked_ms = median_ms([&] { mla_decode_cuda(q, cache, tables, lens, scale); });
  const double graph_ms = graph_call_ms(call);
  const double matched_ms = size_matched_copy_ms(bytes);
  const double gbs = bytes / ms / 1e6;
  const double flop = 2.0 * batch * heads * context * (576 + 512);
  // A baseline not timed (quick mode, or the expanded K/V too large) prints as "-".
  const auto baseline_ms = [](double t) { return std::isnan(t) ? "-" : fmt::format("{:.3f}", t); };
  const auto times = [ms](double t) {
    return std::isnan(t) ? "-" : fmt::format("x{:.2f}", t / ms);
  };
  fmt::print(
      "mla_decode h {} batch {} ctx {}  aten {} ms  sdpa {} ms  kernel {:.4f} ms  "
      "{} aten  {} sdpa  {:.0f} GB/s  {:.2f} of copy  {:.0f} TFLOP/s  rel err {:.1e}  "
      "checked {:.3f} ms  graph {:.4f} ms ({:.2f} of copy)  size-matched copy {:.4f} ms ({:.2f} "
      "of copy)\n",
      heads, batch, context, baseline_ms(aten_ms), baseline_ms(sdpa_ms), ms, times(aten_ms),
      times(sdpa_ms), gbs, gbs / copy_gbs, flop / ms / 1e9, err, checked_ms, graph_ms,
      bytes / graph_ms / 1e6 / copy_gbs, matched_ms, bytes / matched_ms / 1e6 / copy_gbs);
  if (heads % 64 == 0) {  // the mma.sync kernel the wgmma one replaces, same inputs
    const auto mma_sync = [&] {
      return mla_decode_cuda(q, cache, tables, lens, scale, 0, false, false);
    };
    const double mma_err = rel_err(mma_sync());
    const double mma_ms = per_call_ms(mma_sync);
    fmt::print(
        "  mma.sync kernel {:.3f} ms  {:.2f} of copy  {:.0f} TFLOP/s  rel err {:.1e}  wgmma "
        "x{:.2f}\n",
        mma_ms, bytes / mma_ms / 1e6 / copy_gbs, flop / mma_ms / 1e9, mma_err, mma_ms / ms);
    // Compute-bound: 0.85 of copy would need flop / bytes * 0.85 * copy_gbs of tensor throughput.
    const double dense = dense_bf16_tflops(), needed = flop / bytes * 0.85 * copy_gbs / 1e3;
    fmt::print(
        "  compute roofline: dense BF16 GEMM {:.0f} TFLOP/s here; kernel {:.2f} of it; 0.85 of "
        "copy would need {:.0f} TFLOP/s ({:.2f} of the dense GEMM)\n",
        dense, flop / ms / 1e9 / dense, needed, needed / dense);
  }
  if (heads == 16) {
    bench_mla_early(cache, tables, lens, q, bytes, copy_gbs);
    bench_mla_query(cache, tables, lens, q);
  }
  bench_mla_fp8(m, cache, tables, lens, q, ms, copy_gbs);
  if (heads == 16 && context <= 4096 && !quick)
    fmt::print("  ms per call by ranges per sequence:{}\n", splits_sweep([&](int splits) {
                 mla_decode_cuda(q, cache, tables, lens, scale, splits, false);
               }));
}

}  // namespace
}  // namespace ponder::kernels

int main(int argc, char** argv) {
  using namespace ponder::kernels;
  if (!at::hasCUDA()) {
    fmt::print("bench_kernels: no CUDA device, nothing to time\n");
    return 0;
  }
  const std::vector<std::string> only(argv + 1, argv + argc);
  auto wanted = [&](const std::string& name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };
  cudaDeviceProp prop{};
  ponder::bench::check_cuda(cudaGetDeviceProperties(&prop, 0), "properties");
  const double copy_gbs = copy_bandwidth_gbs();
  fmt::print("device {} ({} SMs, {} MB L2); device-to-device copy {:.0f} GB/s (read + write)\n",
             prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_gbs);
  if (wanted("rms_norm")) bench_rms_norm(copy_gbs);
  if (wanted("elementwise")) bench_elementwise(copy_gbs);
  if (wanted("sampling")) bench_sampling(copy_gbs);
  if (wanted("logprobs")) bench_logprobs(copy_gbs);
  if (wanted("dense_decode")) bench_dense_decode(copy_gbs);
  if (wanted("mla_decode")) {
    std::string capacity;
    for (int size = 2; size <= kMlaClusterSplits; ++size)
      capacity += fmt::format(" {}: {}", size, mla_decode_cluster_capacity(size));
    fmt::print("mla_decode 16-head kernel: clusters of n ranges the device holds at once:{}\n",
               capacity);
    for (const MlaShape& m : mla_shapes(only))
      bench_mla_shape(m, copy_gbs, std::find(only.begin(), only.end(), "quick") != only.end());
  }
  return 0;
}
