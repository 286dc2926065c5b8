// DecodeGraphs: the rollout engine's pure-decode steps as CUDA graphs. Per batch bucket, the
// model's paged decode forward, its logits and the GPU sampler are captured once and replayed
// with the step's inputs copied into static buffers; rows past the batch decode on a scratch page.
// A replay can be launched before the previous one's tokens reach the host (async decode).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/Event.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cuda_graph.h"
#include "model/causal_lm.h"

namespace ponder::engine {

// One pure-decode step on the host: one new token per sequence.
struct DecodeStepInputs {
  std::vector<std::int64_t> ids, positions, slots, context_lens;
  std::vector<const std::vector<std::int64_t>*> blocks;  // each sequence's pages, in order
  // Empty: row i feeds ids[i]. Else row i feeds the token the previous replay sampled in its row
  // from_rows[i], read on the device (ids unused): the step is launched before that token is
  // known on the host.
  std::vector<std::int64_t> from_rows;
};

// The padded batch size a step of n sequences runs at (1 <= n <= max_batch): powers of two up
// to 8, then multiples of 8 up to 64, then multiples of 32, capped at max_batch.
std::int64_t decode_bucket(std::int64_t n, std::int64_t max_batch);

// The block-table width (pages of block_size tokens) that holds a sequence of `tokens` tokens
// (prompt + new tokens), bounded by the model's context (max_context tokens) and the cache
// (max_pages); at least one page.
std::int64_t table_width(std::int64_t tokens, std::int64_t block_size, std::int64_t max_context,
                         std::int64_t max_pages);

class DecodeGraphs {
 public:
  // The model must be graph_capturable(); scratch_page: a cache page no sequence owns.
  DecodeGraphs(model::CausalLM& model, model::PagedKvCache& cache, std::int64_t max_batch,
               std::int64_t scratch_page);

  // A replay queued on the current stream whose tokens are not read yet (launch, then wait).
  struct Launched {
    std::int64_t n = 0, rows = 0;
    int buffer = 0;  // the pinned buffers it uses
  };
  // One token per sequence, as sample_tokens gives for the same logits: the bucket's graph
  // replay queued with the copy of its tokens to pinned host memory (the host goes on; wait reads
  // them), or nullopt for the first kRecordAfter - 1 steps of a bucket (the caller runs them
  // eagerly). Recording costs several eager steps (an eager warm-up, the capture, instantiating
  // ~1,400 nodes, a fresh memory pool), so buckets that last a step or two (the staggered ends of
  // a batch) never pay it. `sampling` is called only when the graph runs (it takes the
  // sequences' seeded draws). At most two launches may be unwaited at once.
  static constexpr int kRecordAfter = 3;
  std::optional<Launched> launch(const DecodeStepInputs& step,
                                 const std::function<SamplingSettings()>& sampling);
  // Blocks until `launched`'s tokens are on the host and returns them.
  std::vector<SampledToken> wait(const Launched& launched);
  // Whether a step of n sequences whose longest holds `pages` pages replays at once (its bucket
  // is recorded and the tables are wide enough): launch then never records or runs eagerly.
  bool ready(std::int64_t n, std::int64_t pages) const;
  // Makes the static block tables at least `width` pages wide (a run reserves its longest
  // sequence's width at its start, so no graph is re-recorded mid-run); widening drops the
  // recorded graphs. A step with wider tables than reserved still widens them (to a power of 2).
  void reserve(std::int64_t width);
  // Drops the recorded graphs (they hold the addresses of the weights and the cache), gives their
  // memory pool back to the driver and starts a fresh one for the next ones.
  void clear();
  // Bytes the recorded graphs' memory pool holds (their intermediate tensors, largest bucket's).
  std::int64_t pool_bytes() const;
  std::size_t captured() const { return graphs_.size(); }
  // Graphs recorded since construction, re-recordings included.
  std::int64_t recordings() const { return recordings_; }
  std::int64_t width() const { return width_; }

 private:
  struct Graph {
    kernels::CudaGraph graph;
    at::Tensor out;  // [3, rows] double: token, logprob, raw logprob
  };
  void resize(std::int64_t width);
  void upload(const DecodeStepInputs& step, const SamplingSettings& sampling, std::int64_t rows,
              int buffer);
  Graph capture(std::int64_t rows);
  at::Tensor ints(std::int64_t field, std::int64_t rows) const;
  at::Tensor reals(std::int64_t field, std::int64_t rows) const;
  at::Tensor tables(std::int64_t rows) const;

  model::CausalLM& model_;
  model::PagedKvCache& cache_;
  std::int64_t max_batch_, scratch_page_, width_ = 0, recordings_ = 0;
  std::shared_ptr<kernels::CudaGraph::Pool> pool_;
  // Static inputs on the device and two sets of pinned host mirrors (a launch fills one while the
  // previous launch's copy may still read the other): ints [6 + width, max_batch] (ids, source
  // rows, positions, slots, context lengths, top-k, then the block tables [max_batch, width]);
  // reals [4, max_batch] (temperature, top-p, min-p, uniform).
  at::Tensor ints_, reals_;
  std::array<at::Tensor, 2> host_ints_, host_reals_;
  // The last replay's sampled tokens on the device [max_batch] (what the next replay's rows read
  // through from_rows), and per buffer the pinned copy of a replay's outputs [3, max_batch]
  // (token, logprob, raw logprob) with the event that marks it complete.
  at::Tensor last_tokens_;
  std::array<at::Tensor, 2> host_out_;
  std::array<std::optional<c10::Event>, 2> copied_;
  int next_buffer_ = 0;
  std::map<std::int64_t, Graph> graphs_;  // by bucket
  std::map<std::int64_t, int> asked_;     // steps each bucket was asked for since the last clear
};

}  // namespace ponder::engine
