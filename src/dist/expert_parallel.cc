#include "dist/expert_parallel.h"

#include <torch/csrc/autograd/custom_function.h>

#include <numeric>

#include "dist/gather.h"

namespace ponder::dist {
namespace {

at::Tensor exchange(ProcessGroup& group, const at::Tensor& input,
                    const std::vector<std::int64_t>& recv_counts,
                    const std::vector<std::int64_t>& send_counts) {
  std::vector<std::int64_t> shape = input.sizes().vec();
  shape[0] = std::accumulate(recv_counts.begin(), recv_counts.end(), std::int64_t{0});
  at::Tensor output = at::empty(shape, input.options().requires_grad(false));
  group.all_to_all(output, input, recv_counts, send_counts);
  return output;
}

class AllToAllRows : public torch::autograd::Function<AllToAllRows> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input,
                            ProcessGroup* group, const std::vector<std::int64_t>& recv_counts,
                            const std::vector<std::int64_t>& send_counts) {
    // saved_data holds IValues only: the group travels as an integer.
    ctx->saved_data["group"] = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(group));
    ctx->saved_data["recv"] = recv_counts;
    ctx->saved_data["send"] = send_counts;
    return exchange(*group, input.detach(), recv_counts, send_counts);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<ProcessGroup*>(
        static_cast<std::intptr_t>(ctx->saved_data["group"].toInt()));
    const auto recv = ctx->saved_data["recv"].toIntVector();
    const auto send = ctx->saved_data["send"].toIntVector();
    return {exchange(*group, grads[0].contiguous(), send, recv), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

std::vector<std::int64_t> to_vector(const at::Tensor& counts) {
  const at::Tensor c = counts.to(at::kCPU).contiguous();
  return {c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel()};
}

}  // namespace

at::Tensor all_to_all_rows(ProcessGroup& group, const at::Tensor& input,
                           const std::vector<std::int64_t>& recv_counts,
                           const std::vector<std::int64_t>& send_counts) {
  return AllToAllRows::apply(input, &group, recv_counts, send_counts);
}

ExpertParallelMoe::ExpertParallelMoe(ProcessGroup& group, const model::Moe& moe)
    : group_(group), moe_(moe) {
  const auto experts = static_cast<std::int64_t>(moe.experts.size());
  std::tie(first_, last_) = shard_range(experts, group.rank(), group.world_size());
  owner_ = at::empty({experts}, at::kLong);
  for (int r = 0; r < group.world_size(); ++r) {
    const auto [begin, end] = shard_range(experts, r, group.world_size());
    owner_.narrow(0, begin, end - begin).fill_(r);
  }
}

at::Tensor ExpertParallelMoe::operator()(const at::Tensor& x) const {
  const model::MoeRouting routing = moe_.route(x);
  const std::int64_t k = routing.experts.size(1), world = group_.world_size();
  // Every (token, expert) assignment, grouped by the rank holding the expert.
  const at::Tensor expert = routing.experts.reshape(-1);
  const at::Tensor destination = owner_.to(expert.device()).index_select(0, expert);
  const at::Tensor order = std::get<1>(destination.sort(/*stable=*/true, 0, false));
  const at::Tensor token = at::floor_divide(order, k);
  const auto send = to_vector(at::bincount(destination, {}, world));
  at::Tensor recv_counts = at::empty({world}, at::kLong);
  group_.all_to_all(recv_counts, at::tensor(send, at::kLong), std::vector<std::int64_t>(world, 1),
                    std::vector<std::int64_t>(world, 1));
  const auto recv = to_vector(recv_counts);
  const at::Tensor rows = all_to_all_rows(group_, x.index_select(0, token), recv, send);
  const at::Tensor row_expert = exchange(group_, expert.index_select(0, order), recv, send);
  at::Tensor y = at::zeros_like(rows);
  for (std::int64_t e = first_; e < last_; ++e) {
    const at::Tensor hits = (row_expert == e).nonzero().squeeze(1);
    if (hits.numel() > 0) y = y.index_add(0, hits, moe_.experts[e](rows.index_select(0, hits)));
  }
  const at::Tensor back = all_to_all_rows(group_, y, send, recv);
  const at::Tensor weight = routing.weights.reshape(-1).index_select(0, order).unsqueeze(1);
  const at::Tensor out = at::zeros_like(x).index_add(0, token, back * weight.to(x.scalar_type()));
  return moe_.shared ? out + (*moe_.shared)(x) : out;
}

}  // namespace ponder::dist
