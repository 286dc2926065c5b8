#include "engine/decode_graphs.h"

#include <c10/core/impl/DeviceGuardImplInterface.h>

#include <algorithm>
#include <bit>

#include "core/error.h"
#include "kernels/sampling.h"

namespace ponder::engine {
namespace {

enum IntField : std::int64_t { kIds, kFrom, kPositions, kSlots, kContexts, kTopK, kIntFields };
enum RealField : std::int64_t { kTemperature, kTopP, kMinP, kUniform, kRealFields };

}  // namespace

DecodeGraphs::DecodeGraphs(model::CausalLM& model, model::PagedKvCache& cache,
                           std::int64_t max_batch, std::int64_t scratch_page)
    : model_(model),
      cache_(cache),
      max_batch_(max_batch),
      scratch_page_(scratch_page),
      pool_(kernels::CudaGraph::new_pool()) {
  if (!model.graph_capturable())
    throw Error("DecodeGraphs: the model's decode step cannot be captured as a CUDA graph");
}

std::int64_t decode_bucket(std::int64_t n, std::int64_t max_batch) {
  const auto round_up = [](std::int64_t x, std::int64_t m) { return (x + m - 1) / m * m; };
  const std::int64_t b = n <= 8    ? static_cast<std::int64_t>(std::bit_ceil(std::uint64_t(n)))
                         : n <= 64 ? round_up(n, 8)
                                   : round_up(n, 32);
  return std::min(b, max_batch);
}

std::int64_t table_width(std::int64_t tokens, std::int64_t block_size, std::int64_t max_context,
                         std::int64_t max_pages) {
  if (block_size < 1) throw Error("table_width: block size " + std::to_string(block_size));
  const std::int64_t capped = std::min(tokens, std::max<std::int64_t>(max_context, 1));
  return std::clamp<std::int64_t>((capped + block_size - 1) / block_size, 1,
                                  std::max<std::int64_t>(max_pages, 1));
}

at::Tensor DecodeGraphs::ints(std::int64_t field, std::int64_t rows) const {
  return ints_.narrow(0, field * max_batch_, rows);
}

at::Tensor DecodeGraphs::reals(std::int64_t field, std::int64_t rows) const {
  return reals_.narrow(0, field * max_batch_, rows);
}

at::Tensor DecodeGraphs::tables(std::int64_t rows) const {
  return ints_.narrow(0, kIntFields * max_batch_, max_batch_ * width_)
      .view({max_batch_, width_})
      .narrow(0, 0, rows);
}

void DecodeGraphs::clear() {
  graphs_.clear();
  asked_.clear();
  kernels::CudaGraph::free_pool(*pool_);
  pool_ = kernels::CudaGraph::new_pool();
}

std::int64_t DecodeGraphs::pool_bytes() const { return kernels::CudaGraph::pool_bytes(*pool_); }

void DecodeGraphs::reserve(std::int64_t width) {
  if (width > width_) resize(width);
}

// New static buffers for block tables `width` pages wide; graphs recorded on the old ones go.
void DecodeGraphs::resize(std::int64_t width) {
  clear();
  width_ = width;
  const at::Device device = cache_.layers.front().front().device();
  const std::int64_t int_count = (kIntFields + width) * max_batch_;
  for (auto& event : copied_)  // the pinned buffers may still be read by a queued copy
    if (event) event->synchronize();
  ints_ = at::zeros({int_count}, at::TensorOptions(at::kLong).device(device));
  reals_ = at::zeros({kRealFields * max_batch_}, at::TensorOptions(at::kDouble).device(device));
  last_tokens_ = at::zeros({max_batch_}, ints_.options());
  const auto pinned = [](std::int64_t count, at::ScalarType type) {
    return at::zeros({count}, at::TensorOptions(type).pinned_memory(true));
  };
  for (int b = 0; b < 2; ++b) {
    host_ints_[b] = pinned(int_count, at::kLong);
    host_reals_[b] = pinned(kRealFields * max_batch_, at::kDouble);
    host_out_[b] = pinned(3 * max_batch_, at::kDouble);
  }
}

// Fills pinned mirror set `buffer` (rows past the batch: token 0 at position 0 on the scratch
// page, greedy) and copies it to the device on the current stream.
void DecodeGraphs::upload(const DecodeStepInputs& step, const SamplingSettings& sampling,
                          std::int64_t rows, int buffer) {
  const std::int64_t n = static_cast<std::int64_t>(step.positions.size());
  std::int64_t* in = host_ints_[buffer].data_ptr<std::int64_t>();
  double* re = host_reals_[buffer].data_ptr<double>();
  auto put = [&](auto* base, std::int64_t field, const auto& values, auto pad) {
    auto* row = base + field * max_batch_;
    std::copy(values.begin(), values.end(), row);
    std::fill(row + n, row + rows, pad);
  };
  if (step.from_rows.empty()) {
    put(in, kIds, step.ids, std::int64_t{0});
    put(in, kFrom, std::vector<std::int64_t>(n, -1), std::int64_t{-1});
  } else {
    put(in, kIds, std::vector<std::int64_t>(n, 0), std::int64_t{0});
    put(in, kFrom, step.from_rows, std::int64_t{-1});
  }
  put(in, kPositions, step.positions, std::int64_t{0});
  put(in, kSlots, step.slots, scratch_page_ * cache_.block_size);
  put(in, kContexts, step.context_lens, std::int64_t{1});
  put(in, kTopK, sampling.top_k, std::int64_t{0});
  put(re, kTemperature, sampling.temperature, 0.0);
  put(re, kTopP, sampling.top_p, 1.0);
  put(re, kMinP, sampling.min_p, 0.0);
  put(re, kUniform, sampling.uniform, 0.0);
  std::int64_t* table = in + kIntFields * max_batch_;
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t* row = table + r * width_;
    const std::int64_t* first = r < n ? step.blocks[r]->data() : row;
    const std::int64_t used = r < n ? static_cast<std::int64_t>(step.blocks[r]->size()) : 0;
    std::copy(first, first + used, row);
    std::fill(row + used, row + width_, scratch_page_);
  }
  const std::int64_t filled = kIntFields * max_batch_ + rows * width_;  // the tables' used rows
  ints_.narrow(0, 0, filled).copy_(host_ints_[buffer].narrow(0, 0, filled), /*non_blocking=*/true);
  reals_.copy_(host_reals_[buffer], /*non_blocking=*/true);
}

DecodeGraphs::Graph DecodeGraphs::capture(std::int64_t rows) {
  Graph g;
  g.graph.capture(
      [&] {
        // Rows with a source row feed the previous replay's token there, read on the device.
        const at::Tensor from = ints(kFrom, rows);
        const at::Tensor ids =
            at::where(from >= 0, last_tokens_.index_select(0, from.clamp_min(0)), ints(kIds, rows));
        model::StepBatch batch{ids,
                               ints(kPositions, rows),
                               ints(kSlots, rows),
                               at::arange(rows + 1, ints_.options()),
                               ints(kContexts, rows),
                               tables(rows)};
        batch.decode_only = true;
        const at::Tensor logits = model_.logits(model_.forward_paged(batch, cache_));
        const kernels::SampledTokens t = kernels::sample_cuda(logits, {reals(kTemperature, rows),
                                                                       ints(kTopK, rows),
                                                                       reals(kTopP, rows),
                                                                       reals(kMinP, rows),
                                                                       reals(kUniform, rows),
                                                                       {}});
        last_tokens_.narrow(0, 0, rows).copy_(t.token);
        g.out = at::stack(
            {t.token.to(at::kDouble), t.logprob.to(at::kDouble), t.raw_logprob.to(at::kDouble)});
      },
      pool_);
  return g;
}

bool DecodeGraphs::ready(std::int64_t n, std::int64_t pages) const {
  return n >= 1 && n <= max_batch_ && pages <= width_ &&
         graphs_.contains(decode_bucket(n, max_batch_));
}

std::optional<DecodeGraphs::Launched> DecodeGraphs::launch(
    const DecodeStepInputs& step, const std::function<SamplingSettings()>& sampling) {
  const std::int64_t n = static_cast<std::int64_t>(step.positions.size());
  if (n < 1 || n > max_batch_)
    throw Error("DecodeGraphs: " + std::to_string(n) + " sequences, expected 1 to " +
                std::to_string(max_batch_));
  std::size_t pages = 1;
  for (const auto* blocks : step.blocks) pages = std::max(pages, blocks->size());
  if (static_cast<std::int64_t>(pages) > width_)
    resize(static_cast<std::int64_t>(std::bit_ceil(pages)));
  const std::int64_t rows = decode_bucket(n, max_batch_);
  auto it = graphs_.find(rows);
  if (it == graphs_.end() && ++asked_[rows] < kRecordAfter) return std::nullopt;
  if (!step.from_rows.empty() && it == graphs_.end())
    throw Error("DecodeGraphs: a step reading the previous replay's tokens needs its graph");
  const int buffer = next_buffer_;
  next_buffer_ ^= 1;
  if (copied_[buffer]) copied_[buffer]->synchronize();  // its last upload has been read
  upload(step, sampling(), rows, buffer);
  if (it == graphs_.end()) {
    it = graphs_.emplace(rows, capture(rows)).first;
    ++recordings_;
  }
  it->second.graph.replay();
  host_out_[buffer].narrow(0, 0, 3 * rows).view({3, rows}).copy_(it->second.out, true);
  const at::Device device = ints_.device();
  if (!copied_[buffer]) copied_[buffer].emplace(device.type());
  copied_[buffer]->record(c10::impl::getDeviceGuardImpl(device.type())->getStream(device));
  return Launched{n, rows, buffer};
}

std::vector<SampledToken> DecodeGraphs::wait(const Launched& launched) {
  copied_[launched.buffer]->synchronize();
  const double* out = host_out_[launched.buffer].data_ptr<double>();
  const std::int64_t rows = launched.rows;
  std::vector<SampledToken> sampled;
  for (std::int64_t i = 0; i < launched.n; ++i)
    sampled.push_back({static_cast<std::int64_t>(out[i]), out[rows + i], out[2 * rows + i]});
  return sampled;
}

}  // namespace ponder::engine
