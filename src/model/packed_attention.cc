#include "model/packed_attention.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace ponder::model {
namespace {

at::Tensor on_device(const std::vector<std::int64_t>& values, const at::Device& device) {
  return at::tensor(values, at::kLong).to(device);
}

// Sequence indices by decreasing length, split where a group's padding would pass 25%.
std::vector<std::vector<std::int64_t>> length_groups(const std::vector<std::int64_t>& lengths) {
  std::vector<std::int64_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<std::int64_t>> groups;
  std::int64_t longest = 0, real = 0;
  for (const std::int64_t s : order) {
    if (lengths[s] == 0) break;
    const auto size = static_cast<std::int64_t>(groups.empty() ? 0 : groups.back().size());
    if (groups.empty() || 4 * (size + 1) * longest > 5 * (real + lengths[s])) {
      groups.emplace_back();
      longest = lengths[s];
      real = 0;
    }
    groups.back().push_back(s);
    real += lengths[s];
  }
  return groups;
}

std::vector<std::int64_t> sequence_lengths(const std::int64_t* cu, std::int64_t count) {
  std::vector<std::int64_t> lengths(std::max<std::int64_t>(count, 0));
  for (std::int64_t s = 0; s < count; ++s) lengths[s] = cu[s + 1] - cu[s];
  if (count < 0 || cu[0] != 0 || std::ranges::any_of(lengths, [](auto n) { return n < 0; }))
    throw Error("cu_seqlens: expected non-decreasing token offsets starting at 0");
  return lengths;
}

}  // namespace

PackedSequences PackedSequences::from(const at::Tensor& cu_seqlens, const at::Device& device) {
  const at::Tensor host = cu_seqlens.to(at::kCPU, at::kLong).contiguous();
  PackedSequences packed = from_host(
      {host.data_ptr<std::int64_t>(), host.data_ptr<std::int64_t>() + host.numel()}, device);
  packed.cu_seqlens = cu_seqlens;
  return packed;
}

PackedSequences PackedSequences::from_host(const std::vector<std::int64_t>& cu_seqlens,
                                           const at::Device& device) {
  if (cu_seqlens.empty()) throw Error("cu_seqlens: expected at least one offset (0)");
  const std::int64_t* cu = cu_seqlens.data();
  const std::vector<std::int64_t> lengths =
      sequence_lengths(cu, static_cast<std::int64_t>(cu_seqlens.size()) - 1);
  PackedSequences packed{{}, {}, {}, cu[lengths.size()]};
  std::vector<std::int64_t> restore(packed.tokens);
  std::int64_t row = 0;
  for (const std::vector<std::int64_t>& members : length_groups(lengths)) {
    Group g{static_cast<std::int64_t>(members.size()), lengths[members[0]], cu[members[0]]};
    std::vector<std::int64_t> gather, keep;
    for (std::int64_t j = 0; j < g.sequences; ++j)
      for (std::int64_t t = 0; t < g.max_length; ++t) {
        gather.push_back(cu[members[j]] + std::min(t, lengths[members[j]] - 1));
        if (t < lengths[members[j]]) keep.push_back(j * g.max_length + t);
      }
    const bool padded = keep.size() != gather.size();
    const bool consecutive = std::ranges::adjacent_find(members, [](auto a, auto b) {
                               return b != a + 1;
                             }) == members.end();
    if (padded || !consecutive) g.gather = on_device(gather, device);
    if (padded) g.keep = on_device(keep, device);
    for (const std::int64_t slot : keep) restore[gather[slot]] = row++;
    packed.groups.push_back(std::move(g));
  }
  const auto in_order = [i = std::int64_t{0}](std::int64_t r) mutable { return r == i++; };
  if (!std::ranges::all_of(restore, in_order)) packed.restore = on_device(restore, device);
  return packed;
}

at::Tensor packed_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const PackedSequences& packed, double scale) {
  if (q.size(0) != packed.tokens)
    throw Error("packed_causal_attention: " + std::to_string(q.size(0)) +
                " tokens, cu_seqlens has " + std::to_string(packed.tokens));
  const bool grouped = k.size(1) != q.size(1);
  std::vector<at::Tensor> outputs;
  for (const PackedSequences::Group& g : packed.groups) {
    const auto batched = [&](const at::Tensor& t) {  // [sequences, h, max_length, d]
      const at::Tensor rows = g.gather.defined()
                                  ? t.index_select(0, g.gather)
                                  : t.narrow(0, g.first_token, g.sequences * g.max_length);
      return rows.reshape({g.sequences, g.max_length, t.size(1), t.size(2)}).transpose(1, 2);
    };
    const at::Tensor o =
        at::scaled_dot_product_attention(batched(q), batched(k), batched(v), {}, 0.0,
                                         /*is_causal=*/true, scale, /*enable_gqa=*/grouped);
    const at::Tensor rows = o.transpose(1, 2).reshape({-1, o.size(1), o.size(3)});
    outputs.push_back(g.keep.defined() ? rows.index_select(0, g.keep) : rows);
  }
  if (outputs.empty()) return at::empty({0, q.size(1), v.size(2)}, q.options());
  const at::Tensor out = outputs.size() == 1 ? outputs[0] : at::cat(outputs);
  return packed.restore.defined() ? out.index_select(0, packed.restore) : out;
}

}  // namespace ponder::model
