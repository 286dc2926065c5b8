#include "kernels/sampling.h"

#include <algorithm>

#include "core/error.h"

#ifdef PONDER_WITH_CUDA
#include "kernels/sampling_kernel.h"
#endif

namespace ponder::kernels {
namespace {

constexpr std::int64_t kReferenceChunk = 8192;

#ifdef PONDER_WITH_CUDA
// `t` as a contiguous [entries] tensor of `dtype` on `device`.
at::Tensor entry_tensor(const at::Tensor& t, const char* name, std::int64_t entries,
                        at::ScalarType dtype, const at::Device& device) {
  if (!t.defined() || t.dim() != 1 || t.size(0) != entries)
    throw Error(std::string("sample_cuda: ") + name + " must be a [" + std::to_string(entries) +
                "] tensor");
  return t.to(device, dtype).contiguous();
}

// Logits of vocab rows [start, start + size) for every hidden row, in FP32.
at::Tensor chunk_logits(const at::Tensor& hidden, const at::Tensor& lm_head, std::int64_t start,
                        std::int64_t size) {
  const at::Tensor w = lm_head.narrow(0, start, size);
  if (hidden.scalar_type() == at::kFloat) return at::mm(hidden, w.to(at::kFloat).t());
  return at::mm(hidden, w.t(), at::kFloat);
}
#endif

}  // namespace

SampledTokens sample_cuda(const at::Tensor& logits, const SamplingBatch& b) {
#ifdef PONDER_WITH_CUDA
  const char* who = "sample_cuda";
  require_cuda(who, {logits});
  if (logits.dim() != 2 || logits.size(1) == 0 || logits.stride(1) != 1)
    throw Error("sample_cuda: logits must be [rows, vocab] with contiguous rows");
  const std::int64_t entries = b.temperature.defined() ? b.temperature.numel() : 0;
  const at::Device dev = logits.device();
  const at::Tensor temperature =
      entry_tensor(b.temperature, "temperature", entries, at::kFloat, dev);
  const at::Tensor top_k = entry_tensor(b.top_k, "top_k", entries, at::kLong, dev);
  const at::Tensor top_p = entry_tensor(b.top_p, "top_p", entries, at::kFloat, dev);
  const at::Tensor min_p = entry_tensor(b.min_p, "min_p", entries, at::kFloat, dev);
  const at::Tensor uniform = entry_tensor(b.uniform, "uniform", entries, at::kDouble, dev);
  at::Tensor row_of;
  if (b.row_of.defined()) {
    row_of = entry_tensor(b.row_of, "row_of", entries, at::kLong, dev);
    if (entries > 0 && (row_of.min().item<std::int64_t>() < 0 ||
                        row_of.max().item<std::int64_t>() >= logits.size(0)))
      throw Error("sample_cuda: row_of must index rows of logits");
  } else if (entries != logits.size(0)) {
    throw Error("sample_cuda: without row_of, one entry per logits row is needed");
  }
  SampledTokens out{at::empty({entries}, logits.options().dtype(at::kLong)),
                    at::empty({entries}, logits.options().dtype(at::kFloat)),
                    at::empty({entries}, logits.options().dtype(at::kFloat))};
  SampleParams p;
  p.logits = logits.data_ptr();
  p.type = element_type(logits, who);
  p.entries = entries;
  p.vocab = logits.size(1);
  p.stride = logits.stride(0);
  p.row_of = row_of.defined() ? row_of.data_ptr<std::int64_t>() : nullptr;
  p.temperature = temperature.data_ptr<float>();
  p.top_k = top_k.data_ptr<std::int64_t>();
  p.top_p = top_p.data_ptr<float>();
  p.min_p = min_p.data_ptr<float>();
  p.uniform = uniform.data_ptr<double>();
  p.token = out.token.data_ptr<std::int64_t>();
  p.logprob = out.logprob.data_ptr<float>();
  p.raw_logprob = out.raw_logprob.data_ptr<float>();
  if (entries > 0) check_launch(launch_sample(p, current_stream()), who);
  return out;
#else
  (void)logits, (void)b;
  no_cuda("sample_cuda");
#endif
}

at::Tensor token_logprobs_reference(const at::Tensor& hidden, const at::Tensor& lm_head,
                                    const at::Tensor& targets) {
  const at::Tensor h = hidden.to(at::kFloat);
  std::vector<at::Tensor> chunk_lse;
  for (std::int64_t start = 0; start < lm_head.size(0); start += kReferenceChunk) {
    const std::int64_t size = std::min(kReferenceChunk, lm_head.size(0) - start);
    chunk_lse.push_back(
        at::logsumexp(at::linear(h, lm_head.narrow(0, start, size).to(at::kFloat)), -1));
  }
  const at::Tensor lse = at::logsumexp(at::stack(chunk_lse, -1), -1);
  const at::Tensor target_logit = (h * lm_head.index_select(0, targets).to(at::kFloat)).sum(-1);
  return target_logit - lse;
}

at::Tensor token_logprobs(const at::Tensor& hidden, const at::Tensor& lm_head,
                          const at::Tensor& targets) {
  if (use_kernel({hidden, lm_head, targets}) && hidden.dim() == 2 &&
      hidden.scalar_type() == lm_head.scalar_type())
    return token_logprobs_cuda(hidden, lm_head, targets);
  return token_logprobs_reference(hidden, lm_head, targets);
}

at::Tensor token_logprobs_cuda(const at::Tensor& hidden, const at::Tensor& lm_head,
                               const at::Tensor& targets, std::int64_t chunk) {
#ifdef PONDER_WITH_CUDA
  const char* who = "token_logprobs_cuda";
  require_cuda(who, {hidden, lm_head, targets});
  if (hidden.dim() != 2 || lm_head.dim() != 2 || hidden.size(1) != lm_head.size(1) ||
      targets.dim() != 1 || targets.size(0) != hidden.size(0))
    throw Error("token_logprobs_cuda: expected hidden [N, H], lm_head [V, H], targets [N]");
  element_type(hidden, who);
  const std::int64_t rows = hidden.size(0), vocab = lm_head.size(0);
  const auto f32 = hidden.options().dtype(at::kFloat);
  at::Tensor out = at::empty({rows}, f32);
  if (rows == 0) return out;
  // About 256 MiB of FP32 logits per chunk unless told otherwise, a multiple of 256 vocab rows.
  if (chunk <= 0)
    chunk = std::clamp<std::int64_t>(((std::int64_t{1} << 26) / rows) / 256 * 256, 256, vocab);
  const at::Tensor h = hidden.contiguous(), t = targets.to(at::kLong).contiguous();
  at::Tensor run_max = at::empty({rows}, f32), run_sum = at::empty({rows}, f32),
             target_logit = at::empty({rows}, f32);
  for (std::int64_t start = 0; start < vocab; start += chunk) {
    const std::int64_t size = std::min(chunk, vocab - start);
    const at::Tensor logits = chunk_logits(h, lm_head, start, size).contiguous();
    LogprobChunkParams p{logits.data_ptr<float>(),
                         rows,
                         size,
                         start,
                         t.data_ptr<std::int64_t>(),
                         run_max.data_ptr<float>(),
                         run_sum.data_ptr<float>(),
                         target_logit.data_ptr<float>(),
                         out.data_ptr<float>(),
                         start == 0,
                         start + size >= vocab};
    check_launch(launch_logprob_chunk(p, current_stream()), who);
  }
  return out;
#else
  (void)hidden, (void)lm_head, (void)targets, (void)chunk;
  no_cuda("token_logprobs_cuda");
#endif
}

}  // namespace ponder::kernels
