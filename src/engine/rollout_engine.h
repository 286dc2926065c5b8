// RolloutEngine: generates completions from a CausalLM with a paged KV cache, continuous batching
// (chunked prefill mixed with decode), prefix sharing across a prompt's n samples, preemption with
// recompute when blocks run out, and exact per-token log-probabilities.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/block_allocator.h"
#include "engine/decode_graphs.h"
#include "engine/sampler.h"
#include "kernels/releasable_buffer.h"
#include "model/causal_lm.h"
#include "model/tokenizer.h"

namespace ponder::engine {

struct Request {
  std::vector<std::int64_t> prompt_ids;
  std::int64_t n = 1;
  SamplingParams params;
};

struct Completion {
  std::size_t request = 0;
  std::int64_t sample = 0;
  std::vector<std::int64_t> ids;
  std::string text;                  // decoded, special tokens skipped, cut before a stop string
  std::vector<double> logprobs;      // sampling distribution
  std::vector<double> raw_logprobs;  // model distribution
  std::string finish_reason;         // "stop" (EOS, stop token or string) or "length"
};

struct GenerateMetrics {
  std::int64_t prompt_tokens = 0, generated_tokens = 0, steps = 0, preemptions = 0;
  // Decode steps launched before the previous step's tokens reached the host (async decode).
  std::int64_t steps_ahead = 0;
  std::int64_t peak_blocks_used = 0, num_blocks = 0;
  std::int64_t cache_bytes = 0;  // the KV cache's pages, all layers
  double seconds = 0, tokens_per_second = 0, mean_batch_sequences = 0;
  nlohmann::json to_json() const;
};

struct EngineOptions {
  std::int64_t block_size = 64;
  // 0: sized from free memory (the GPU's for a model on one, else the host's) x memory_fraction
  std::int64_t num_blocks = 0;
  double memory_fraction = 0.25;
  // > 0: at most this many blocks whatever the above gives (what the caller can use at once).
  std::int64_t max_blocks = 0;
  // Prefill chunk + decode tokens per step; 0: default_batch_tokens for the model's device.
  std::int64_t max_batch_tokens = 0;
  std::int64_t max_running = 256;
  bool show_progress = true;
  // Steps where every sequence decodes one token replay CUDA graphs per batch bucket when the
  // model allows it (weights on a GPU, MoE on its grouped path); false: always eager.
  bool cuda_graphs = true;
  // With the graphs: in steady-state decode (every unfinished sequence decoding in the step, its
  // bucket recorded, pages free for one more token) the next step is launched before this one's
  // tokens reach the host (its rows read them on the device) and the host finishes this step's
  // tokens while it runs; the outputs equal the synchronous path's. false: every step waits.
  bool async_decode = true;
  // auto: pages in the model's dtype; fp8 (MLA models only): FP8 latent rows, ~1.75x the blocks
  // of BF16 pages in the same memory (model::parse_kv_cache_dtype reads the option's name).
  model::KvCacheDtype kv_cache_dtype = model::KvCacheDtype::kAuto;
};

// Tokens per step by default: 1,024 on the CPU, 16,384 on a GPU, where larger prefill chunks
// keep the GEMMs busy (256 x 512-token prompts on an H200: 1.82 s at 2,048 tokens per step,
// 1.29 s at 16,384, 1.26 s at 32,768; bench/RESULTS.md).
std::int64_t default_batch_tokens(const at::Device& device);

// Called with (request, sample, newly decoded text) as tokens arrive.
using StreamCallback = std::function<void(std::size_t, std::int64_t, const std::string&)>;
// Called once per completion as soon as it finishes, while the others still generate (the
// trainer scores rewards there, overlapping generation).
using FinishCallback = std::function<void(const Completion&)>;

class RolloutEngine {
 public:
  RolloutEngine(model::CausalLM& model, const model::Tokenizer* tokenizer,
                EngineOptions options = {});

  std::vector<Completion> generate(std::span<const Request> requests,
                                   const StreamCallback& stream = {},
                                   const FinishCallback& on_finish = {});
  const GenerateMetrics& last_metrics() const { return metrics_; }

  // Frees the KV pages (e.g. for the training phase) and takes the same number back, zeroed; each
  // is a no-op when already done. On a GPU the pages come back at their addresses, so the
  // recorded decode graphs stay valid (no re-recording).
  void release_cache();
  void reserve_cache();
  bool cache_released() const { return cache_.layers.empty(); }
  // Drops the recorded decode graphs and gives their memory pool back to the driver (e.g. for the
  // training phase); the next generate records them again (DecodeGraphs::kRecordAfter). The
  // engine computes with the model's own tensors, so weights updated in place need nothing;
  // weights replaced (new addresses) need this, as the graphs hold the old addresses.
  void release_graphs();
  // Bytes the recorded decode graphs' memory pool holds (0 when the engine runs eagerly).
  std::int64_t graph_pool_bytes() const { return graphs_ ? graphs_->pool_bytes() : 0; }
  // Decode graphs held now, and recorded since the cache was reserved, re-recordings included
  // (0 when the engine runs eagerly).
  std::size_t captured_graphs() const { return graphs_ ? graphs_->captured() : 0; }
  std::int64_t graph_recordings() const { return graphs_ ? graphs_->recordings() : 0; }

  const BlockAllocator& allocator() const { return allocator_; }
  // Bytes of the KV pages, all layers (0 while released).
  std::int64_t cache_bytes() const;
  std::int64_t block_size() const { return options_.block_size; }

 private:
  struct Sequence;
  // False when the blocks must wait for running sequences to finish.
  bool ensure_blocks(Sequence& seq, std::int64_t upto, std::vector<Sequence>& all);
  void copy_block(std::int64_t from, std::int64_t to);
  bool preempt_youngest(std::vector<Sequence>& all, const Sequence* keep);
  void finish_token(Sequence& seq, const SampledToken& sampled, const StreamCallback& stream);
  std::vector<Sequence*> schedule(std::vector<Sequence>& all);
  // Runs one scheduled step; a graph step may go on with steps launched ahead
  // (EngineOptions::async_decode), calling after_step after each one's tokens are finished.
  void run_step(const std::vector<Sequence*>& batch, std::vector<Sequence>& all,
                const StreamCallback& stream, const std::function<void()>& after_step);
  // The block-table width (pages) of the requests' longest sequence, prompt + max_tokens,
  // within the model's context and the cache: the decode graphs' tables are reserved that wide.
  std::int64_t longest_table(std::span<const Request> requests) const;
  // A step where every sequence decodes one token and has sampled before (no forks): replays
  // the bucket's CUDA graph, then, with async_decode, the steps launched ahead of it. False when
  // graphs are off, the step does not qualify or its bucket is not recorded yet
  // (DecodeGraphs::kRecordAfter).
  bool run_graph_step(const std::vector<Sequence*>& batch, std::vector<Sequence>& all,
                      const StreamCallback& stream, const std::function<void()>& after_step);
  // A graph step launched whose tokens are not finished yet: per row its sequence (a sequence
  // that finished meanwhile leaves its row wasted) and the uniforms drawn for it.
  struct InFlight {
    std::vector<Sequence*> rows;
    DecodeGraphs::Launched launched;
    std::vector<double> uniforms;
  };
  // Launches rows' next decode step: tokens from the host (from_rows empty) or, one step ahead,
  // from the previous replay's rows from_rows.
  std::optional<InFlight> launch_graph_step(std::vector<Sequence*> rows,
                                            std::vector<std::int64_t> from_rows);
  // The step after `current`, launched before current's tokens are on the host, when it is
  // the step the synchronous scheduler would run (else nullopt).
  std::optional<InFlight> launch_ahead(const InFlight& current, const std::vector<Sequence>& all);
  // Gives each of rows' sequences the page for its position cached + 1 (one step ahead) from the
  // free ones; false (nothing allocated) when that needs a preemption or a shared page's copy.
  bool pages_ahead(const std::vector<Sequence*>& rows);
  // Waits for f's tokens and finishes them (rows of finished sequences are dropped).
  void collect(const InFlight& f, const StreamCallback& stream);
  // Whether `next` (launched ahead) is what the synchronous path runs once the step before it is
  // collected: its live rows fill the same bucket. Else it is dropped (its draws given back).
  bool keep_or_drop(const InFlight& next);
  // The block count of the first reservation: options or free memory, capped at max_blocks.
  std::int64_t size_blocks(std::int64_t block_bytes, const at::Device& device) const;
  // The layers' page tensors of `blocks` blocks as views of memory_ (each 256-byte aligned), when
  // it is held; returns the bytes they span.
  std::int64_t lay_out_pages(std::int64_t blocks);
  // Logs the first reservation's size.
  void log_cache() const;

  model::CausalLM& model_;
  const model::Tokenizer* tokenizer_;
  EngineOptions options_;
  std::unique_ptr<kernels::ReleasableBuffer> memory_;  // the pages' memory; cache_ views it
  model::PagedKvCache cache_;
  BlockAllocator allocator_;
  std::optional<std::int64_t> eos_id_;
  GenerateMetrics metrics_;
  std::unique_ptr<DecodeGraphs> graphs_;  // declared after cache_: refers to it
};

}  // namespace ponder::engine
