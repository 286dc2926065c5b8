#include "engine/rollout_engine.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <numeric>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "kernels/binding.h"

namespace ponder::engine {
namespace {

// Free memory where the cache goes: the GPU's, or the host's available memory.
std::int64_t available_memory_bytes(const at::Device& device) {
  if (device.is_cuda()) return kernels::free_device_memory(device);
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 4LL << 30;
}

}  // namespace

struct RolloutEngine::Sequence {
  std::size_t request = 0;
  std::int64_t sample = 0;
  std::int64_t arrival = 0;  // larger = younger; the youngest are preempted first
  const SamplingParams* params = nullptr;
  std::vector<std::int64_t> tokens;
  std::int64_t prompt_len = 0;
  std::int64_t cached = 0;  // tokens whose KV is in the cache
  std::vector<std::int64_t> blocks;
  bool waiting_for_leader = false;  // samples 1..n-1 fork from sample 0 after its prompt prefill
  bool finished = false;
  bool scheduled = false;
  std::int64_t step_tokens = 0;  // tokens fed in the current step
  SequenceRng rng;
  std::optional<model::StreamingDecoder> decoder;
  Completion out;

  Sequence(std::uint64_t seed, std::int64_t sample_index)
      : rng(seed, static_cast<std::uint64_t>(sample_index)) {}
  bool runnable() const {
    return !finished && !waiting_for_leader && cached < static_cast<std::int64_t>(tokens.size());
  }
};

nlohmann::json GenerateMetrics::to_json() const {
  return {{"prompt_tokens", prompt_tokens},
          {"generated_tokens", generated_tokens},
          {"steps", steps},
          {"preemptions", preemptions},
          {"steps_ahead", steps_ahead},
          {"peak_blocks_used", peak_blocks_used},
          {"num_blocks", num_blocks},
          {"cache_bytes", cache_bytes},
          {"seconds", seconds},
          {"tokens_per_second", tokens_per_second},
          {"mean_batch_sequences", mean_batch_sequences}};
}

std::int64_t default_batch_tokens(const at::Device& device) {
  return device.is_cpu() ? 1024 : 16384;
}

RolloutEngine::RolloutEngine(model::CausalLM& model, const model::Tokenizer* tokenizer,
                             EngineOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options), allocator_(0) {
  if (options_.max_batch_tokens < 0)
    throw Error("RolloutEngine: max_batch_tokens " + std::to_string(options_.max_batch_tokens) +
                ", expected > 0 (or 0 for the device's default)");
  if (options_.max_batch_tokens == 0)
    options_.max_batch_tokens =
        default_batch_tokens(model.named_parameters().front().second.device());
  eos_id_ = tokenizer && tokenizer->eos_id() ? tokenizer->eos_id() : model.config().eos_token_id;
  reserve_cache();
}

std::int64_t RolloutEngine::size_blocks(std::int64_t block_bytes, const at::Device& device) const {
  std::int64_t blocks = options_.num_blocks;
  if (blocks <= 0)
    blocks = std::max<std::int64_t>(
        16, static_cast<std::int64_t>(static_cast<double>(available_memory_bytes(device)) *
                                      options_.memory_fraction) /
                block_bytes);
  return options_.max_blocks > 0 ? std::min(blocks, options_.max_blocks) : blocks;
}

std::int64_t RolloutEngine::lay_out_pages(std::int64_t blocks) {
  const model::KvLayout layout = model_.kv_layout(options_.kv_cache_dtype);
  const auto element = static_cast<std::int64_t>(c10::elementSize(layout.dtype));
  const bool views = memory_ && !memory_->released();
  cache_ = {options_.block_size, {}};
  std::int64_t offset = 0;
  for (std::int64_t l = 0; l < layout.num_layers; ++l) {
    std::vector<at::Tensor> tensors;
    for (const auto& shape : layout.per_token_shapes) {
      std::vector<std::int64_t> full = {blocks, options_.block_size};
      full.insert(full.end(), shape.begin(), shape.end());
      const std::int64_t bytes =
          std::accumulate(full.begin(), full.end(), element, std::multiplies<>());
      if (views)
        tensors.push_back(memory_->bytes().narrow(0, offset, bytes).view(layout.dtype).view(full));
      offset = (offset + bytes + 255) / 256 * 256;
    }
    if (views) cache_.layers.push_back(std::move(tensors));
  }
  return offset;
}

void RolloutEngine::reserve_cache() {
  if (!cache_released()) return;
  const bool first = !memory_;
  if (memory_) {
    memory_->restore();
  } else {
    const model::KvLayout layout = model_.kv_layout(options_.kv_cache_dtype);
    std::int64_t per_token = 0;
    for (const auto& shape : layout.per_token_shapes)
      per_token +=
          std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>());
    const std::int64_t block_bytes = per_token * layout.num_layers * options_.block_size *
                                     static_cast<std::int64_t>(c10::elementSize(layout.dtype));
    const at::Device device = model_.named_parameters().front().second.device();
    options_.num_blocks = size_blocks(block_bytes, device);  // later reservations: as many
    memory_ =
        std::make_unique<kernels::ReleasableBuffer>(lay_out_pages(options_.num_blocks), device);
  }
  lay_out_pages(options_.num_blocks);
  if (first) log_cache();
  allocator_ = BlockAllocator(options_.num_blocks);
  if (options_.cuda_graphs && model_.graph_capturable()) {
    // padding rows of the graphs' buckets: a fresh allocator's first block, every reservation
    const auto scratch = allocator_.allocate();
    if (scratch && !graphs_)
      graphs_ = std::make_unique<DecodeGraphs>(model_, cache_, options_.max_running, *scratch);
  }
}

void RolloutEngine::log_cache() const {
  const at::Device device = cache_.layers.front().front().device();
  log::info(
      "KV cache: {} blocks of {} tokens ({} tokens, {:.3f} GiB, {}{})", options_.num_blocks,
      options_.block_size, options_.num_blocks * options_.block_size,
      static_cast<double>(cache_bytes()) / (1 << 30),
      options_.kv_cache_dtype == model::KvCacheDtype::kFp8 ? "FP8 latent rows" : "model dtype",
      options_.num_blocks == options_.max_blocks ? ", capped at what the caller uses at once" : "");
  if (options_.kv_cache_dtype == model::KvCacheDtype::kFp8 && device.is_cuda() &&
      model_.config().num_attention_heads >= 64)
    log::warn(
        "KV cache: FP8 pages with {} heads decode slower than BF16 pages (the wgmma kernel "
        "converts them to BF16 in shared memory; H200 figures in bench/RESULTS.md): FP8 buys "
        "capacity here, not speed",
        model_.config().num_attention_heads);
}

std::int64_t RolloutEngine::cache_bytes() const {
  std::int64_t bytes = 0;
  for (const auto& layer : cache_.layers)
    for (const auto& tensor : layer) bytes += tensor.nbytes();
  return bytes;
}

void RolloutEngine::release_graphs() {
  if (graphs_) graphs_->clear();
}

void RolloutEngine::release_cache() {
  cache_.layers.clear();
  if (memory_) memory_->release();
  allocator_ = BlockAllocator(0);
}

void RolloutEngine::copy_block(std::int64_t from, std::int64_t to) {
  for (auto& layer : cache_.layers)
    for (auto& tensor : layer) tensor[to].copy_(tensor[from]);
}

bool RolloutEngine::preempt_youngest(std::vector<Sequence>& all, const Sequence* keep) {
  Sequence* victim = nullptr;
  for (auto& s : all)
    if (&s != keep && !s.finished && !s.scheduled && !s.blocks.empty() &&
        (!victim || s.arrival > victim->arrival))
      victim = &s;
  if (!victim) return false;
  allocator_.release_all(victim->blocks);
  victim->blocks.clear();
  victim->cached = 0;  // recomputed from its tokens when scheduled again
  ++metrics_.preemptions;
  return true;
}

// Makes sure seq owns writable blocks for positions [cached, upto), preempting younger sequences
// when the cache is full. The only block that can be shared is the one holding position `cached`
// (a prompt's partial last block after a fork): it is copied before the first write.
bool RolloutEngine::ensure_blocks(Sequence& seq, std::int64_t upto, std::vector<Sequence>& all) {
  auto take = [&]() -> std::optional<std::int64_t> {
    for (;;) {
      if (auto block = allocator_.allocate()) return block;
      if (preempt_youngest(all, &seq)) continue;
      const bool others_hold_blocks = std::any_of(all.begin(), all.end(), [&](const Sequence& s) {
        return &s != &seq && !s.blocks.empty();
      });
      if (others_hold_blocks) return std::nullopt;  // wait for running sequences to finish
      throw Error("KV cache too small: " + std::to_string(allocator_.num_blocks()) + " blocks of " +
                  std::to_string(options_.block_size) + " tokens cannot hold a sequence of " +
                  std::to_string(upto) + " tokens; raise the cache memory fraction");
    }
  };
  const std::int64_t first = seq.cached / options_.block_size;
  if (first < static_cast<std::int64_t>(seq.blocks.size()) &&
      allocator_.ref_count(seq.blocks[first]) > 1) {
    const auto fresh = take();
    if (!fresh) return false;
    copy_block(seq.blocks[first], *fresh);
    allocator_.release(seq.blocks[first]);
    seq.blocks[first] = *fresh;
  }
  while (static_cast<std::int64_t>(seq.blocks.size()) * options_.block_size < upto) {
    const auto block = take();
    if (!block) return false;
    seq.blocks.push_back(*block);
  }
  metrics_.peak_blocks_used = std::max(metrics_.peak_blocks_used, allocator_.used_count());
  return true;
}

void RolloutEngine::finish_token(Sequence& seq, const SampledToken& sampled,
                                 const StreamCallback& stream) {
  const SamplingParams& p = *seq.params;
  seq.tokens.push_back(sampled.token);
  seq.out.ids.push_back(sampled.token);
  seq.out.logprobs.push_back(sampled.logprob);
  seq.out.raw_logprobs.push_back(sampled.raw_logprob);
  ++metrics_.generated_tokens;
  const bool is_eos = !p.ignore_eos && eos_id_ && sampled.token == *eos_id_;
  const bool is_stop_id = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(),
                                    sampled.token) != p.stop_token_ids.end();
  std::string piece = seq.decoder ? seq.decoder->push(sampled.token) : "";
  const std::size_t before = seq.out.text.size();
  seq.out.text += piece;
  std::optional<std::string> reason;
  for (const auto& stop : p.stop) {
    const std::size_t from = before >= stop.size() ? before - stop.size() + 1 : 0;
    if (const auto at = seq.out.text.find(stop, from); !stop.empty() && at != std::string::npos) {
      seq.out.text.resize(at);
      piece = at > before ? piece.substr(0, at - before) : "";
      reason = "stop";
      break;
    }
  }
  if (!reason && (is_eos || is_stop_id)) reason = "stop";
  if (!reason && static_cast<std::int64_t>(seq.out.ids.size()) >= p.max_tokens) reason = "length";
  if (stream && !piece.empty()) stream(seq.request, seq.sample, piece);
  if (!reason) return;
  if (seq.decoder && *reason == "length") seq.out.text += seq.decoder->flush();
  seq.out.finish_reason = *reason;
  seq.finished = true;
  allocator_.release_all(seq.blocks);
  seq.blocks.clear();
}

}  // namespace ponder::engine

namespace ponder::engine {

// Decode-phase sequences first (oldest first), then prefill chunks, within the token budget.
std::vector<RolloutEngine::Sequence*> RolloutEngine::schedule(std::vector<Sequence>& all) {
  std::vector<Sequence*> candidates;
  for (auto& s : all)
    if (s.runnable()) candidates.push_back(&s);
  auto decoding = [](const Sequence* s) {
    return static_cast<std::int64_t>(s->tokens.size()) - s->cached == 1;
  };
  std::stable_sort(candidates.begin(), candidates.end(), [&](const Sequence* a, const Sequence* b) {
    if (decoding(a) != decoding(b)) return decoding(a);
    return a->arrival < b->arrival;
  });
  std::vector<Sequence*> batch;
  std::int64_t budget = options_.max_batch_tokens;
  for (Sequence* s : candidates) {
    if (budget <= 0 || static_cast<std::int64_t>(batch.size()) >= options_.max_running) break;
    if (s->blocks.empty() && s->cached > 0) s->cached = 0;
    const std::int64_t n =
        std::min<std::int64_t>(static_cast<std::int64_t>(s->tokens.size()) - s->cached, budget);
    s->scheduled = true;
    s->step_tokens = n;
    if (!ensure_blocks(*s, s->cached + n, all)) {
      s->scheduled = false;
      break;
    }
    batch.push_back(s);
    budget -= n;
  }
  return batch;
}

std::optional<RolloutEngine::InFlight> RolloutEngine::launch_graph_step(
    std::vector<Sequence*> rows, std::vector<std::int64_t> from_rows) {
  const std::int64_t bs = options_.block_size;
  const std::int64_t ahead = from_rows.empty() ? 0 : 1;  // the token before is still in flight
  DecodeStepInputs in;
  std::vector<const SamplingParams*> params;
  std::vector<SequenceRng*> rngs;
  for (Sequence* s : rows) {
    const std::int64_t pos = s->cached + ahead;
    if (!ahead) in.ids.push_back(s->tokens[pos]);
    in.positions.push_back(pos);
    in.slots.push_back(s->blocks[pos / bs] * bs + pos % bs);
    in.context_lens.push_back(pos + 1);
    in.blocks.push_back(&s->blocks);
    params.push_back(s->params);
    rngs.push_back(&s->rng);
  }
  in.from_rows = std::move(from_rows);
  // The step's seeded draws are taken only when the graph runs (else run_step takes them).
  SamplingSettings settings;
  const auto launched = graphs_->launch(in, [&] {
    settings = sampling_settings(params, rngs);
    return settings;
  });
  if (!launched) return std::nullopt;
  return InFlight{std::move(rows), *launched, std::move(settings.uniform)};
}

bool RolloutEngine::pages_ahead(const std::vector<Sequence*>& rows) {
  const std::int64_t bs = options_.block_size;
  std::int64_t fresh = 0;
  for (const Sequence* s : rows) {
    const std::int64_t page = (s->cached + 1) / bs;
    if (page < static_cast<std::int64_t>(s->blocks.size())) {
      if (allocator_.ref_count(s->blocks[page]) > 1) return false;
    } else {
      ++fresh;
    }
  }
  if (fresh > allocator_.free_count()) return false;
  for (Sequence* s : rows)
    if ((s->cached + 1) / bs == static_cast<std::int64_t>(s->blocks.size()))
      s->blocks.push_back(*allocator_.allocate());
  metrics_.peak_blocks_used = std::max(metrics_.peak_blocks_used, allocator_.used_count());
  return true;
}

std::optional<RolloutEngine::InFlight> RolloutEngine::launch_ahead(
    const InFlight& current, const std::vector<Sequence>& all) {
  // Every unfinished sequence must be in the step, or the scheduler may change the batch
  // (prefill chunks, preempted or waiting sequences).
  const auto in_step = static_cast<std::size_t>(std::count_if(
      current.rows.begin(), current.rows.end(), [](const Sequence* s) { return !s->finished; }));
  if (in_step != static_cast<std::size_t>(std::count_if(
                     all.begin(), all.end(), [](const Sequence& s) { return !s.finished; })))
    return std::nullopt;
  std::vector<Sequence*> rows;
  std::vector<std::int64_t> from_rows;
  std::size_t pages = 1;
  for (std::size_t i = 0; i < current.rows.size(); ++i) {
    Sequence* s = current.rows[i];
    // Finished before `current` (its row there is wasted), or `current` gives its last token.
    if (s->finished || static_cast<std::int64_t>(s->out.ids.size()) + 1 >= s->params->max_tokens)
      continue;
    rows.push_back(s);
    from_rows.push_back(static_cast<std::int64_t>(i));
    pages = std::max({pages, s->blocks.size(),
                      static_cast<std::size_t>((s->cached + 1) / options_.block_size + 1)});
  }
  if (rows.empty() ||
      !graphs_->ready(static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(pages)))
    return std::nullopt;
  if (!pages_ahead(rows)) return std::nullopt;
  return launch_graph_step(std::move(rows), std::move(from_rows));
}

void RolloutEngine::collect(const InFlight& f, const StreamCallback& stream) {
  const std::vector<SampledToken> sampled = graphs_->wait(f.launched);
  std::int64_t live = 0;
  for (std::size_t i = 0; i < f.rows.size(); ++i) {
    Sequence* s = f.rows[i];
    if (s->finished) continue;
    ++live;
    s->cached += 1;
    s->scheduled = false;
    finish_token(*s, sampled[i], stream);
  }
  ++metrics_.steps;
  metrics_.mean_batch_sequences += static_cast<double>(live);
}

bool RolloutEngine::keep_or_drop(const InFlight& next) {
  const auto live = std::count_if(next.rows.begin(), next.rows.end(),
                                  [](const Sequence* s) { return !s->finished; });
  if (live > 0 && decode_bucket(live, options_.max_running) == next.launched.rows) return true;
  graphs_->wait(next.launched);  // its pinned buffers are free again
  for (std::size_t i = 0; i < next.rows.size(); ++i)
    if (next.rows[i]->params->temperature > 0) next.rows[i]->rng.unread(next.uniforms[i]);
  return false;
}

bool RolloutEngine::run_graph_step(const std::vector<Sequence*>& batch, std::vector<Sequence>& all,
                                   const StreamCallback& stream,
                                   const std::function<void()>& after_step) {
  if (!graphs_ || batch.empty()) return false;
  for (const Sequence* s : batch)
    if (s->step_tokens != 1 || s->out.ids.empty()) return false;
  std::optional<InFlight> current = launch_graph_step(batch, {});
  if (!current) return false;
  for (;;) {
    std::optional<InFlight> next =
        options_.async_decode ? launch_ahead(*current, all) : std::nullopt;
    collect(*current, stream);
    after_step();
    if (!next || !keep_or_drop(*next)) return true;
    ++metrics_.steps_ahead;
    current = std::move(next);
  }
}

void RolloutEngine::run_step(const std::vector<Sequence*>& batch, std::vector<Sequence>& all,
                             const StreamCallback& stream,
                             const std::function<void()>& after_step) {
  if (run_graph_step(batch, all, stream, after_step)) return;
  const std::int64_t bs = options_.block_size;
  std::vector<std::int64_t> ids, positions, slots, starts = {0}, contexts;
  std::size_t max_blocks = 0;
  for (Sequence* s : batch) {
    const std::int64_t n = s->step_tokens;
    for (std::int64_t pos = s->cached; pos < s->cached + n; ++pos) {
      ids.push_back(s->tokens[pos]);
      positions.push_back(pos);
      slots.push_back(s->blocks[pos / bs] * bs + pos % bs);
    }
    starts.push_back(static_cast<std::int64_t>(ids.size()));
    contexts.push_back(s->cached + n);
    max_blocks = std::max(max_blocks, s->blocks.size());
  }
  std::vector<std::int64_t> tables(batch.size() * max_blocks, 0);
  for (std::size_t i = 0; i < batch.size(); ++i)
    std::copy(batch[i]->blocks.begin(), batch[i]->blocks.end(), tables.begin() + i * max_blocks);
  const at::Device device = cache_.layers.front().front().device();
  auto to_device = [&](const std::vector<std::int64_t>& v) {
    return at::tensor(v, at::kLong).to(device);
  };
  const model::StepBatch step{to_device(ids),
                              to_device(positions),
                              to_device(slots),
                              to_device(starts),
                              to_device(contexts),
                              to_device(tables).view({static_cast<std::int64_t>(batch.size()),
                                                      static_cast<std::int64_t>(max_blocks)})};
  const at::Tensor hidden = model_.forward_paged(step, cache_);
  ++metrics_.steps;
  metrics_.mean_batch_sequences += static_cast<double>(batch.size());
  std::vector<std::int64_t> rows;
  std::vector<Sequence*> ready;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Sequence* s = batch[i];
    s->cached += s->step_tokens;
    s->scheduled = false;
    if (s->cached == static_cast<std::int64_t>(s->tokens.size())) {
      rows.push_back(starts[i + 1] - 1);
      ready.push_back(s);
    }
  }
  if (ready.empty()) return;
  const at::Tensor logits = model_.logits(hidden.index_select(0, to_device(rows)));
  // Each ready sequence samples from its row, and so do the samples forked from it.
  std::vector<Sequence*> sampling;
  std::vector<std::int64_t> sample_rows;
  for (std::size_t r = 0; r < ready.size(); ++r) {
    Sequence* s = ready[r];
    sampling.push_back(s);
    sample_rows.push_back(static_cast<std::int64_t>(r));
    if (s->sample == 0 && s->out.ids.empty()) {
      // The other samples of this request start on the prompt's blocks: no recompute, no copy.
      for (auto& follower : all) {
        if (!follower.waiting_for_leader || follower.request != s->request) continue;
        for (auto b : s->blocks) allocator_.retain(b);
        follower.blocks = s->blocks;
        follower.cached = follower.prompt_len;
        follower.waiting_for_leader = false;
        sampling.push_back(&follower);
        sample_rows.push_back(static_cast<std::int64_t>(r));
      }
    }
  }
  std::vector<const SamplingParams*> params;
  std::vector<SequenceRng*> rngs;
  for (Sequence* s : sampling) {
    params.push_back(s->params);
    rngs.push_back(&s->rng);
  }
  const std::vector<SampledToken> sampled = sample_tokens(logits, sample_rows, params, rngs);
  for (std::size_t i = 0; i < sampling.size(); ++i) finish_token(*sampling[i], sampled[i], stream);
}

std::int64_t RolloutEngine::longest_table(std::span<const Request> requests) const {
  std::int64_t tokens = 1;
  for (const Request& req : requests)
    tokens =
        std::max(tokens, static_cast<std::int64_t>(req.prompt_ids.size()) + req.params.max_tokens);
  // One page of the cache is the decode graphs' scratch page.
  return table_width(tokens, options_.block_size, model_.config().max_position_embeddings,
                     allocator_.num_blocks() - 1);
}

std::vector<Completion> RolloutEngine::generate(std::span<const Request> requests,
                                                const StreamCallback& stream,
                                                const FinishCallback& on_finish) {
  c10::NoGradGuard no_grad;
  if (cache_.layers.empty())
    throw Error("generate: the KV cache is released; call reserve_cache() first");
  metrics_ = {};
  metrics_.num_blocks = allocator_.num_blocks();
  metrics_.cache_bytes = cache_bytes();
  const auto start = std::chrono::steady_clock::now();
  std::vector<Sequence> all;
  for (std::size_t r = 0; r < requests.size(); ++r) {
    const Request& req = requests[r];
    if (req.prompt_ids.empty())
      throw Error("generate: request " + std::to_string(r) + " has an empty prompt");
    metrics_.prompt_tokens += static_cast<std::int64_t>(req.prompt_ids.size());
    for (std::int64_t k = 0; k < req.n; ++k) {
      Sequence& s = all.emplace_back(req.params.seed, k);
      s.request = r;
      s.sample = k;
      s.arrival = static_cast<std::int64_t>(all.size());
      s.params = &req.params;
      s.tokens = req.prompt_ids;
      s.prompt_len = static_cast<std::int64_t>(req.prompt_ids.size());
      s.waiting_for_leader = k > 0;
      if (tokenizer_) s.decoder.emplace(*tokenizer_);
      s.out.request = r;
      s.out.sample = k;
    }
  }
  if (graphs_) graphs_->reserve(longest_table(requests));
  std::optional<Progress> progress;
  if (options_.show_progress)
    progress.emplace("generate", static_cast<std::int64_t>(all.size()), "seq");
  std::vector<bool> reported(all.size(), false);
  const auto after_step = [&] {
    std::int64_t done = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      if (!all[i].finished) continue;
      ++done;
      if (on_finish && !reported[i]) on_finish(all[i].out);
      reported[i] = true;
    }
    if (progress) progress->set(done);
  };
  for (;;) {
    const auto batch = schedule(all);
    if (batch.empty()) break;
    run_step(batch, all, stream, after_step);
    after_step();
  }
  if (progress) progress->finish();
  metrics_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.tokens_per_second = metrics_.generated_tokens / std::max(metrics_.seconds, 1e-9);
  if (metrics_.steps) metrics_.mean_batch_sequences /= static_cast<double>(metrics_.steps);
  std::vector<Completion> completions;
  for (auto& s : all) completions.push_back(std::move(s.out));
  return completions;
}

}  // namespace ponder::engine
