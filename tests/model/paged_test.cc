#include <gtest/gtest.h>

#include "model/init_model.h"
#include "model/transformer.h"
#include "tests/common/test_util.h"

namespace ponder::model {
namespace {

using testing_util::ScratchDir;

// A hand-written paged cache: each sequence owns blocks in a shuffled order so that block tables
// (not contiguity) decide what attention reads.
struct Harness {
  CausalLM& model;
  PagedKvCache cache;
  std::int64_t block_size = 4;
  std::vector<std::vector<std::int64_t>> tables;
  std::vector<std::int64_t> lengths;

  Harness(CausalLM& m, std::int64_t sequences, std::int64_t blocks_per_sequence) : model(m) {
    const KvLayout layout = model.kv_layout(KvCacheDtype::kAuto);
    const std::int64_t blocks = sequences * blocks_per_sequence;
    cache.block_size = block_size;
    for (std::int64_t l = 0; l < layout.num_layers; ++l) {
      std::vector<at::Tensor> tensors;
      for (const auto& shape : layout.per_token_shapes) {
        std::vector<std::int64_t> full = {blocks, block_size};
        full.insert(full.end(), shape.begin(), shape.end());
        tensors.push_back(at::full(full, NAN, at::TensorOptions().dtype(layout.dtype)));
      }
      cache.layers.push_back(tensors);
    }
    const at::Tensor order = at::randperm(blocks, at::TensorOptions().dtype(at::kLong));
    for (std::int64_t s = 0; s < sequences; ++s) {
      tables.emplace_back();
      for (std::int64_t b = 0; b < blocks_per_sequence; ++b)
        tables.back().push_back(order[s * blocks_per_sequence + b].item<std::int64_t>());
    }
    lengths.assign(sequences, 0);
  }

  // Feeds new tokens for each sequence (possibly none) in one step; returns hidden [T, H].
  at::Tensor step(const std::vector<std::vector<std::int64_t>>& new_tokens) {
    std::vector<std::int64_t> ids, positions, slots, starts = {0}, contexts, table_rows;
    for (std::size_t s = 0; s < new_tokens.size(); ++s) {
      if (new_tokens[s].empty()) continue;
      for (auto token : new_tokens[s]) {
        const std::int64_t pos = lengths[s]++;
        ids.push_back(token);
        positions.push_back(pos);
        slots.push_back(tables[s][pos / block_size] * block_size + pos % block_size);
      }
      starts.push_back(static_cast<std::int64_t>(ids.size()));
      contexts.push_back(lengths[s]);
      table_rows.insert(table_rows.end(), tables[s].begin(), tables[s].end());
    }
    const auto seqs = static_cast<std::int64_t>(contexts.size());
    StepBatch batch{
        at::tensor(ids, at::kLong),      at::tensor(positions, at::kLong),
        at::tensor(slots, at::kLong),    at::tensor(starts, at::kLong),
        at::tensor(contexts, at::kLong), at::tensor(table_rows, at::kLong).view({seqs, -1})};
    return model.forward_paged(batch, cache);
  }
};

// The packed forward over whole sequences: hidden states [total tokens, H] and the sequences'
// first rows (cu_seqlens).
std::pair<at::Tensor, std::vector<std::int64_t>> packed_reference(
    CausalLM& model, const std::vector<std::vector<std::int64_t>>& full) {
  std::vector<std::int64_t> ids, pos, cu = {0};
  for (const auto& seq : full) {
    for (std::size_t i = 0; i < seq.size(); ++i) {
      ids.push_back(seq[i]);
      pos.push_back(static_cast<std::int64_t>(i));
    }
    cu.push_back(static_cast<std::int64_t>(ids.size()));
  }
  return {model.forward_hidden(at::tensor(ids, at::kLong), at::tensor(pos, at::kLong),
                               at::tensor(cu, at::kLong)),
          cu};
}

class PagedVsPacked : public ::testing::TestWithParam<std::string> {};

// Chunked prefill then token-by-token decode through the paged cache (MLA: absorbed form) must
// reproduce the packed expanded forward on the full sequences.
TEST_P(PagedVsPacked, ChunkedPrefillAndDecodeEqualFullRecompute) {
  ScratchDir dir("paged_" + GetParam());
  at::manual_seed(5);
  init_model(preset_config(GetParam()), dir / "m", {.seed = 9});
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  const std::vector<std::vector<std::int64_t>> prompts = {
      {5, 17, 99, 1024, 7, 3, 250, 11, 42},
      {8, 9},
      {300, 301, 302, 303, 304, 305, 306, 307, 308, 309, 310}};
  Harness h(*model, 3, 8);
  std::vector<std::vector<std::int64_t>> full = prompts;
  // Step 1: first chunk of every prompt; step 2: the rest; then 6 decode steps.
  std::vector<std::vector<std::int64_t>> first, rest;
  for (const auto& p : prompts) {
    first.emplace_back(p.begin(), p.begin() + std::min<std::size_t>(p.size(), 5));
    rest.emplace_back(p.begin() + first.back().size(), p.end());
  }
  h.step(first);
  h.step(rest);
  std::vector<at::Tensor> decoded;
  for (int t = 0; t < 6; ++t) {
    std::vector<std::vector<std::int64_t>> tokens;
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      tokens.push_back({(full[s].back() * 31 + t) % 6400});
      full[s].push_back(tokens.back()[0]);
    }
    decoded.push_back(h.step(tokens));  // [3, H], one row per sequence
  }
  // Packed reference over the full sequences; compare each decode step's hidden state.
  const auto [reference, cu] = packed_reference(*model, full);
  for (int t = 0; t < 6; ++t)
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      const std::int64_t row = cu[s] + static_cast<std::int64_t>(prompts[s].size()) + t;
      const double diff =
          (decoded[t][static_cast<std::int64_t>(s)] - reference[row]).abs().max().item<double>();
      EXPECT_LT(diff, 1e-5) << "step " << t << " sequence " << s;
    }
}

// One step mixing every kind of row (a decoding sequence, chunks from position 0 on either side of
// a chunk after cached tokens, so the fresh chunks' rows are not consecutive) after a step of
// fresh chunks only: every row of both steps equals the packed forward on the full sequences.
TEST_P(PagedVsPacked, MixedStepEqualsFullRecompute) {
  ScratchDir dir("paged_mixed_" + GetParam());
  at::manual_seed(6);
  init_model(preset_config(GetParam()), dir / "m", {.seed = 10});
  auto model = load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  const std::vector<std::vector<std::int64_t>> full = {{5, 17, 99, 1024, 7, 3},
                                                       {8, 9, 10, 11, 12, 13},
                                                       {300, 301, 302, 303, 304, 305, 306},
                                                       {40, 41, 42, 43}};
  // tokens each sequence feeds in step 1 and step 2 (0: none)
  const std::vector<std::pair<std::size_t, std::size_t>> feeds = {{5, 1}, {0, 6}, {3, 4}, {0, 4}};
  Harness h(*model, 4, 4);
  std::vector<std::vector<std::int64_t>> first, second;
  for (std::size_t s = 0; s < full.size(); ++s) {
    const auto begin = full[s].begin();
    first.emplace_back(begin, begin + feeds[s].first);
    second.emplace_back(begin + feeds[s].first, begin + feeds[s].first + feeds[s].second);
  }
  const at::Tensor hidden1 = h.step(first), hidden2 = h.step(second);
  const auto [reference, cu] = packed_reference(*model, full);
  std::int64_t row1 = 0, row2 = 0;
  for (std::size_t s = 0; s < full.size(); ++s) {
    const auto [n1, n2] = feeds[s];
    const auto expect = [&](const at::Tensor& hidden, std::int64_t& row, std::size_t from,
                            std::size_t n, int step) {
      const at::Tensor want = reference.narrow(0, cu[s] + static_cast<std::int64_t>(from),
                                               static_cast<std::int64_t>(n));
      const at::Tensor got = hidden.narrow(0, row, static_cast<std::int64_t>(n));
      EXPECT_LT((got - want).abs().max().item<double>(), 1e-5)
          << "step " << step << " sequence " << s;
      row += static_cast<std::int64_t>(n);
    };
    if (n1 > 0) expect(hidden1, row1, 0, n1, 1);
    expect(hidden2, row2, n1, n2, 2);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, PagedVsPacked,
                         ::testing::Values("tiny-mla", "tiny-qwen2", "tiny-llama"));

}  // namespace
}  // namespace ponder::model
