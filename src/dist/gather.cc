#include "dist/gather.h"

#include <algorithm>

namespace ponder::dist {

std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t total, int rank, int world) {
  const std::int64_t base = total / world, extra = total % world;
  const std::int64_t begin = rank * base + std::min<std::int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

std::pair<std::int64_t, std::int64_t> global_offset(ProcessGroup& group, std::int64_t count) {
  at::Tensor counts = at::empty({group.world_size()}, at::kLong);
  group.all_gather(counts, at::full({1}, count, at::kLong));
  return {counts.narrow(0, 0, group.rank()).sum().item<std::int64_t>(),
          counts.sum().item<std::int64_t>()};
}

double global_sum(ProcessGroup& group, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  group.all_reduce_sum(t);
  return t.item<double>();
}

std::vector<double> global_sums(ProcessGroup& group, const std::vector<double>& values) {
  at::Tensor t = at::tensor(values, at::kDouble);
  group.all_reduce_sum(t);
  return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
}

double global_max(ProcessGroup& group, double value) {
  at::Tensor all = at::empty({group.world_size()}, at::kDouble);
  group.all_gather(all, at::full({1}, value, at::kDouble));
  return all.max().item<double>();
}

namespace {

// Each rank's `local` rows, indexed by rank: rows are padded to the longest share for one
// fixed-size all-gather, then cut back.
std::vector<at::Tensor> all_gather_pieces(ProcessGroup& group, const at::Tensor& local) {
  const int world = group.world_size();
  at::Tensor counts = at::empty({world}, at::kLong);
  group.all_gather(counts, at::full({1}, local.size(0), at::kLong));
  const std::int64_t most = counts.max().item<std::int64_t>();
  std::vector<std::int64_t> shape = local.sizes().vec();
  shape[0] = std::max<std::int64_t>(most, 1);
  at::Tensor padded = at::zeros(shape, local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local);
  shape.insert(shape.begin(), world);
  at::Tensor gathered = at::empty(shape, local.options());
  group.all_gather(gathered, padded);
  std::vector<at::Tensor> pieces;
  for (int r = 0; r < world; ++r)
    pieces.push_back(gathered[r].narrow(0, 0, counts[r].item<std::int64_t>()));
  return pieces;
}

}  // namespace

at::Tensor all_gather_rows(ProcessGroup& group, const at::Tensor& local) {
  return at::cat(all_gather_pieces(group, local));
}

std::vector<std::string> all_gather_strings(ProcessGroup& group, const std::string& local) {
  at::Tensor bytes = at::empty({static_cast<std::int64_t>(local.size())}, at::kByte);
  std::copy(local.begin(), local.end(), reinterpret_cast<char*>(bytes.data_ptr<std::uint8_t>()));
  std::vector<std::string> out;
  for (const at::Tensor& piece : all_gather_pieces(group, bytes)) {
    const at::Tensor contiguous = piece.contiguous();
    const auto* data = reinterpret_cast<const char*>(contiguous.data_ptr<std::uint8_t>());
    out.emplace_back(data, data + contiguous.numel());
  }
  return out;
}

std::string from_main(ProcessGroup& group, const std::string& value) {
  if (group.world_size() == 1) return value;
  return all_gather_strings(group, group.is_main() ? value : std::string())[0];
}

}  // namespace ponder::dist
