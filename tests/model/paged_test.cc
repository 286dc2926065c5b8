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
    const KvLayout layout = model.kv_layout();
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
  std::vector<std::int64_t> ids, pos, cu = {0};
  for (const auto& seq : full) {
    for (std::size_t i = 0; i < seq.size(); ++i) {
      ids.push_back(seq[i]);
      pos.push_back(static_cast<std::int64_t>(i));
    }
    cu.push_back(static_cast<std::int64_t>(ids.size()));
  }
  const at::Tensor reference = model->forward_hidden(
      at::tensor(ids, at::kLong), at::tensor(pos, at::kLong), at::tensor(cu, at::kLong));
  for (int t = 0; t < 6; ++t)
    for (std::size_t s = 0; s < prompts.size(); ++s) {
      const std::int64_t row = cu[s] + static_cast<std::int64_t>(prompts[s].size()) + t;
      const double diff =
          (decoded[t][static_cast<std::int64_t>(s)] - reference[row]).abs().max().item<double>();
      EXPECT_LT(diff, 1e-5) << "step " << t << " sequence " << s;
    }
}

INSTANTIATE_TEST_SUITE_P(Families, PagedVsPacked,
                         ::testing::Values("tiny-mla", "tiny-qwen2", "tiny-llama"));

}  // namespace
}  // namespace ponder::model
