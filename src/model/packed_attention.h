// Causal attention over packed training/scoring batches: each sequence attends only to its own
// earlier tokens, at the cost of per-sequence attention rather than attention over all tokens.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace ponder::model {

// The sequences of a packed forward (boundaries cu_seqlens [B+1]) and how attention batches them:
// grouped by length, longest first, each group padded to its longest sequence with at most 25%
// padding. A padded key comes after every real query of its row, so the causal mask alone keeps
// it out. Built once per forward (one host copy of cu_seqlens) and shared by every layer.
struct PackedSequences {
  struct Group {
    std::int64_t sequences = 0, max_length = 0;
    std::int64_t first_token = 0;  // when `gather` is undefined: an unpadded run of tokens
    at::Tensor gather;             // [sequences * max_length] token of each padded slot
    at::Tensor keep;               // slots holding real tokens; undefined when nothing is padded
  };
  at::Tensor cu_seqlens;  // as given; undefined for the paged (inference) forward
  std::vector<Group> groups;
  at::Tensor restore;  // [T] each token's row in the groups' outputs; undefined when in order
  std::int64_t tokens = 0;

  static PackedSequences from(const at::Tensor& cu_seqlens, const at::Device& device);
  // From offsets already on the host (cu_seqlens stays undefined).
  static PackedSequences from_host(const std::vector<std::int64_t>& cu_seqlens,
                                   const at::Device& device);
};

// q [T, h, dk], k [T, g, dk], v [T, g, dv] -> [T, h, dv], each key/value head shared by h / g
// query heads; differentiable.
at::Tensor packed_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const PackedSequences& packed, double scale);

}  // namespace ponder::model
