#include "kernels/mla_decode.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#ifdef PONDER_WITH_CUDA
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/mla_decode_kernel.h"

namespace ponder::kernels {

at::Tensor mla_decode_reference(const at::Tensor& query, const at::Tensor& entries,
                                const at::Tensor& valid, double scale, std::int64_t lora) {
  const at::Tensor scores = at::bmm(query, entries.transpose(1, 2)) * scale;
  const at::Tensor probs = scores.masked_fill(valid.logical_not().unsqueeze(1), -INFINITY)
                               .to(at::kFloat)
                               .softmax(-1)
                               .to(query.scalar_type());
  return at::bmm(probs, entries.narrow(-1, 0, lora));
}

namespace {

constexpr float kFp8Max = 448.f;  // largest finite e4m3

void check_fp8_rows(std::int64_t lora, std::int64_t width) {
  const std::int64_t rope_bytes = width - lora - 4 * (lora / kMlaFp8Group);
  if (lora <= 0 || lora % kMlaFp8Group != 0 || rope_bytes < 0 || rope_bytes % 2 != 0)
    throw Error("FP8 latent cache: kv_lora_rank must be a positive multiple of " +
                std::to_string(kMlaFp8Group) + " (got " + std::to_string(lora) + ", rows of " +
                std::to_string(width) + " bytes)");
}

}  // namespace

at::Tensor mla_cache_quantize(const at::Tensor& latent, const at::Tensor& rope) {
  const std::int64_t lora = latent.size(-1), groups = lora / kMlaFp8Group;
  check_fp8_rows(lora, mla_cache_fp8_bytes(lora, rope.size(-1)));
  const at::Tensor values = latent.to(at::kFloat).reshape({-1, groups, kMlaFp8Group});
  const at::Tensor amax = values.abs().amax(-1, /*keepdim=*/true);
  const at::Tensor scale = at::where(amax > 0, amax / kFp8Max, at::ones_like(amax));
  const at::Tensor fp8 = (values / scale).clamp(-kFp8Max, kFp8Max).to(at::kFloat8_e4m3fn);
  const std::int64_t rows = values.size(0);
  return at::cat(
      {fp8.view(at::kByte).reshape({rows, lora}), scale.reshape({rows, groups}).view(at::kByte),
       rope.to(at::kBFloat16).reshape({rows, -1}).contiguous().view(at::kByte)},
      -1);
}

at::Tensor mla_cache_dequantize(const at::Tensor& rows, std::int64_t lora, at::ScalarType dtype) {
  const std::int64_t width = rows.size(-1), groups = lora / kMlaFp8Group;
  check_fp8_rows(lora, width);
  const std::int64_t scale_bytes = 4 * groups, rope_bytes = width - lora - scale_bytes;
  const at::Tensor flat = rows.reshape({-1, width});
  const at::Tensor fp8 = flat.narrow(1, 0, lora).contiguous().view(at::kFloat8_e4m3fn);
  const at::Tensor scale = flat.narrow(1, lora, scale_bytes).contiguous().view(at::kFloat);
  const at::Tensor latent =
      (fp8.to(at::kFloat).view({-1, groups, kMlaFp8Group}) * scale.unsqueeze(-1)).to(dtype);
  const at::Tensor rope =
      flat.narrow(1, lora + scale_bytes, rope_bytes).contiguous().view(at::kBFloat16).to(dtype);
  std::vector<std::int64_t> shape = rows.sizes().vec();
  shape.back() = lora + rope_bytes / 2;
  return at::cat({latent.view({-1, lora}), rope}, -1).view(shape);
}

at::Tensor mla_cache_entries(const at::Tensor& rows, std::int64_t lora, at::ScalarType dtype) {
  return rows.scalar_type() == at::kByte ? mla_cache_dequantize(rows, lora, dtype) : rows.to(dtype);
}

void mla_decode_query_cuda(const at::Tensor& query, const at::Tensor& q_nope,
                           const at::Tensor& w_uk, const at::Tensor& q_rope, const at::Tensor& cos,
                           const at::Tensor& sin, bool trigger_decode) {
  require_cuda("mla_decode_query_cuda", {query, q_nope, w_uk, q_rope, cos, sin});
  if (q_nope.dim() != 3 || w_uk.dim() != 3 || q_rope.dim() != 3 || w_uk.size(0) != q_nope.size(1) ||
      w_uk.size(1) != q_nope.size(2) || q_rope.size(0) != q_nope.size(0) ||
      q_rope.size(1) != q_nope.size(1))
    throw Error(
        "mla_decode_query_cuda: expected q_nope [D, h, nope], w_uk [h, nope, lora], q_rope [D, h, "
        "rope]");
  const std::int64_t lora = w_uk.size(2), rope = q_rope.size(2);
  if (query.sizes() != at::IntArrayRef{q_nope.size(0), q_nope.size(1), lora + rope} ||
      !query.is_contiguous() || query.scalar_type() != q_nope.scalar_type() ||
      w_uk.scalar_type() != q_nope.scalar_type() || q_rope.scalar_type() != q_nope.scalar_type())
    throw Error(
        "mla_decode_query_cuda: query must be contiguous [D, h, lora + rope] in the inputs' dtype");
  // [h, D, lora] view of the first lora columns: at::bmm_out hands this row-strided out to cuBLAS
  // as it is (ldc h * (lora + rope), batch stride lora + rope), no copy; the operands are einsum's.
  at::Tensor latent = query.narrow(-1, 0, lora).transpose(0, 1);
  at::bmm_out(latent, q_nope.transpose(0, 1), w_uk);
  rope_cuda_out(query.narrow(-1, lora, rope), q_rope, cos, sin, /*interleaved=*/true,
                trigger_decode);
}

bool mla_decode_supported(const at::Tensor& query, const at::Tensor& cache) {
  if (!use_kernel({query, cache}) || query.scalar_type() != at::kBFloat16 || query.dim() != 3 ||
      query.size(1) % 16 != 0 || query.size(2) != kMlaEntry || cache.dim() != 3 ||
      cache.size(1) != kMlaPage)
    return false;
  if (reinterpret_cast<std::uintptr_t>(cache.data_ptr()) % 16 != 0) return false;  // copy engine
  if (cache.scalar_type() == at::kByte) return cache.size(2) == kMlaFp8Entry;
  return cache.scalar_type() == at::kBFloat16 && cache.size(2) == kMlaEntry;
}

#ifdef PONDER_WITH_CUDA
namespace {

// Contexts within the table, and the pages they read within the cache: checked on the device,
// one synchronisation for all of it.
void check_pages(const at::Tensor& tables, const at::Tensor& lens, std::int64_t pages) {
  const std::int64_t capacity = tables.size(1) * kMlaPage;
  const at::Tensor in_context = at::arange(tables.size(1), tables.options()).unsqueeze(0) <
                                ((lens + kMlaPage - 1) / kMlaPage).unsqueeze(1);
  const at::Tensor used = at::where(in_context, tables, 0);
  if (!(lens.min().ge(1) & lens.max().le(capacity) & used.min().ge(0) & used.max().lt(pages))
           .item<bool>())
    throw Error(
        "mla_decode_cuda: context lengths must lie in [1, 64 * max_pages] and their pages in the "
        "cache");
}

// Arrival counters of the fused combine for `groups` (sequence, 16 heads) groups, all zero: the
// kernel leaves them zero, so one buffer per stream serves every call on it without a memset
// (calls on one stream never overlap; calls on different streams, e.g. two engines on two
// threads, get different buffers). It only grows and is never freed, so a CUDA graph that
// captured it keeps a valid buffer; one too small while a graph is being captured is not replaced
// then (its zeroing would run only on replays): that call gets its own, zeroed in the graph.
at::Tensor arrival_counters(std::int64_t groups, const at::TensorOptions& options) {
  static std::mutex mutex;
  // per (device, stream), the last the largest; never destroyed (no frees after CUDA's teardown)
  static auto* buffers = new std::map<std::pair<int, c10::StreamId>, std::vector<at::Tensor>>;
  const std::lock_guard lock(mutex);
  const c10::DeviceIndex device = options.device().index();
  std::vector<at::Tensor>& kept =
      (*buffers)[{device, c10::cuda::getCurrentCUDAStream(device).id()}];
  if (!kept.empty() && kept.back().numel() >= groups) return kept.back();
  if (c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None)
    return at::zeros({groups}, options);
  kept.push_back(at::zeros({std::max<std::int64_t>(groups, 4096)}, options));
  return kept.back();
}

}  // namespace
#endif

at::Tensor mla_decode_cuda(const at::Tensor& query, const at::Tensor& cache,
                           const at::Tensor& block_tables, const at::Tensor& context_lens,
                           double scale, std::int64_t splits, bool check_inputs, bool allow_wgmma,
                           bool early_first_tile) {
#ifdef PONDER_WITH_CUDA
  const char* who = "mla_decode_cuda";
  require_cuda(who, {query, cache, block_tables, context_lens});
  if (!mla_decode_supported(query, cache))
    throw Error(
        "mla_decode_cuda: expected bf16 query [D, 16k heads, 576], cache [pages, 64, 576] bf16 or "
        "[pages, 64, 656] uint8 (FP8 rows), 16-byte aligned");
  const std::int64_t batch = query.size(0), heads = query.size(1);
  if (block_tables.dim() != 2 || block_tables.size(0) != batch || context_lens.dim() != 1 ||
      context_lens.size(0) != batch)
    throw Error("mla_decode_cuda: block_tables [D, max_pages] and context_lens [D] expected");
  at::Tensor out = at::empty({batch, heads, kMlaLatent}, query.options());
  if (batch == 0) return out;
  const at::Tensor tables = block_tables.to(at::kLong).contiguous();
  const at::Tensor lens = context_lens.to(at::kLong).contiguous();
  if (check_inputs) check_pages(tables, lens, cache.size(0));
  const at::Tensor q = query.contiguous(), c = cache.contiguous();
  const bool fp8 = cache.scalar_type() == at::kByte;
  const bool wgmma = allow_wgmma && heads % 64 == 0 && compute_capability() == 90 &&
                     reinterpret_cast<std::uintptr_t>(q.data_ptr()) % 16 == 0 &&
                     reinterpret_cast<std::uintptr_t>(c.data_ptr()) % 16 == 0;
  const int sms = multiprocessor_count(), b = static_cast<int>(batch), h = static_cast<int>(heads);
  if (splits <= 0)
    splits = wgmma ? mla_decode_wgmma_default_splits(b, h, sms)
                   : mla_decode_default_splits(b, h, sms, fp8);
  // ranges of whole pages (wgmma) or of 32-token tiles
  splits = std::clamp<std::int64_t>(splits, 1, (wgmma ? 1 : 2) * tables.size(1));
  const std::int64_t kept = splits > 1 ? splits : 0;
  at::Tensor partial =
      at::empty({batch, heads, kept, kMlaLatent}, query.options().dtype(at::kFloat));
  at::Tensor lse = at::empty({batch, heads, kept}, query.options().dtype(at::kFloat));
  const bool fused = !wgmma && splits > 1 && splits <= kMlaFusedSplits;
  const at::Tensor arrivals =
      fused ? arrival_counters(batch * heads / 16, lse.options().dtype(at::kInt))
            : at::empty({0}, query.options().dtype(at::kInt));
  MlaDecodeParams p{q.data_ptr(),
                    c.data_ptr(),
                    tables.data_ptr<std::int64_t>(),
                    tables.size(1),
                    lens.data_ptr<std::int64_t>(),
                    out.data_ptr(),
                    partial.data_ptr<float>(),
                    lse.data_ptr<float>(),
                    static_cast<unsigned*>(arrivals.data_ptr()),
                    b,
                    h,
                    static_cast<int>(splits),
                    static_cast<float>(scale),
                    fp8};
  // no conversion or copy kernel ran just before (each would write what the first tile reads)
  p.early_first_tile = early_first_tile && !fp8 && tables.is_same(block_tables) &&
                       lens.is_same(context_lens) && c.is_same(cache);
  const int rc = wgmma ? launch_mla_decode_wgmma(p, cache.size(0), current_stream())
                       : launch_mla_decode(p, cache.size(0), current_stream());
  check_launch(rc, who);
  return out;
#else
  (void)query, (void)cache, (void)block_tables, (void)context_lens, (void)scale, (void)splits,
      (void)check_inputs, (void)allow_wgmma, (void)early_first_tile;
  no_cuda("mla_decode_cuda");
#endif
}

}  // namespace ponder::kernels
