#include "kernels/moe_route.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace ponder::kernels {

namespace {

// Whether the kernel takes these shapes and options (else route_experts runs the reference).
bool kernel_fits(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                 const RouteOptions& o) {
#ifdef PONDER_WITH_CUDA
  const std::int64_t experts = logits.dim() == 2 ? logits.size(1) : 0;
  const bool grouped = o.grouping != RouteGroups::kNone;
  const bool groups_fit =
      !grouped || (o.groups >= 1 && o.groups <= kRouteMaxGroups && experts % o.groups == 0 &&
                   o.keep_groups >= 1 && o.keep_groups <= o.groups &&
                   (o.grouping == RouteGroups::kMax || experts / o.groups >= 2));
  const bool bias_fits = !bias || !grouped ||
                         (bias->scalar_type() == at::kFloat && bias->numel() == experts &&
                          bias->device() == logits.device());
  return logits.scalar_type() == at::kFloat && experts >= 1 && experts <= kRouteMaxExperts &&
         o.k >= 1 && o.k <= std::min<std::int64_t>(experts, kRouteMaxChoices) && groups_fit &&
         bias_fits;
#else
  (void)logits, (void)bias, (void)o;
  return false;
#endif
}

}  // namespace

at::Tensor router_logits(const at::Tensor& x, const at::Tensor& weight) {
  if (use_kernel({x, weight}) && x.scalar_type() == at::kBFloat16 &&
      weight.scalar_type() == at::kBFloat16 && x.dim() == 2 && weight.dim() == 2)
    return at::mm(x, weight.t(), at::kFloat);
  return at::linear(x.to(at::kFloat), weight.to(at::kFloat));
}

ExpertRouting route_experts_reference(const at::Tensor& logits,
                                      const std::optional<at::Tensor>& bias,
                                      const RouteOptions& o) {
  const at::Tensor scores =
      o.scoring == RouteScoring::kSigmoid ? logits.sigmoid() : logits.softmax(-1);
  const std::int64_t tokens = logits.size(0), experts = logits.size(1);
  at::Tensor choice = scores;
  if (o.grouping != RouteGroups::kNone) {
    const std::int64_t per_group = experts / o.groups;
    if (bias) choice = scores + bias->to(at::kFloat);
    const at::Tensor grouped = choice.view({tokens, o.groups, per_group});
    const bool top_two = o.grouping == RouteGroups::kTopTwoSum;
    const at::Tensor group_scores =
        top_two ? std::get<0>(grouped.topk(2, -1)).sum(-1) : std::get<0>(grouped.max(-1));
    const at::Tensor top_groups = std::get<1>(group_scores.topk(o.keep_groups, -1));
    const at::Tensor group_mask = at::zeros_like(group_scores).scatter_(1, top_groups, 1.0);
    const at::Tensor expert_mask =
        group_mask.unsqueeze(-1).expand({tokens, o.groups, per_group}).reshape({tokens, experts});
    choice = choice.masked_fill(expert_mask == 0, top_two ? -INFINITY : 0.0);
  }
  const at::Tensor chosen = std::get<1>(choice.topk(o.k, -1));
  at::Tensor weights = scores.gather(1, chosen);
  if (o.normalise && o.k > 1) weights = weights / (weights.sum(-1, /*keepdim=*/true) + 1e-20);
  return {weights * o.scaling, chosen, scores};
}

ExpertRouting route_experts(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                            const RouteOptions& options) {
  if (use_kernel({logits}) && (!bias || !bias->requires_grad()) &&
      kernel_fits(logits, bias, options))
    return route_experts_cuda(logits, bias, options);
  return route_experts_reference(logits, bias, options);
}

ExpertRouting route_experts_cuda(const at::Tensor& logits, const std::optional<at::Tensor>& bias,
                                 const RouteOptions& o) {
#ifdef PONDER_WITH_CUDA
  const char* who = "route_experts_cuda";
  require_cuda(who, {logits});
  if (!kernel_fits(logits, bias, o))
    throw Error(std::string(who) +
                ": expected float32 logits [T, E] with E <= " + std::to_string(kRouteMaxExperts) +
                ", 1 <= k <= min(E, " + std::to_string(kRouteMaxChoices) +
                "), E split into at most " + std::to_string(kRouteMaxGroups) +
                " equal groups (two experts each for top-two sums), 1 <= kept groups <= groups "
                "and a float32 bias [E] on the same device");
  const bool grouped = o.grouping != RouteGroups::kNone;
  const at::Tensor in = logits.contiguous();
  const at::Tensor b = grouped && bias ? bias->contiguous() : at::Tensor();
  const std::int64_t tokens = logits.size(0), experts = logits.size(1);
  ExpertRouting out{at::empty({tokens, o.k}, in.options()),
                    at::empty({tokens, o.k}, in.options().dtype(at::kLong)), at::empty_like(in)};
  const RouteParams p{in.data_ptr<float>(),
                      b.defined() ? b.data_ptr<float>() : nullptr,
                      out.scores.data_ptr<float>(),
                      out.weights.data_ptr<float>(),
                      out.experts.data_ptr<std::int64_t>(),
                      tokens,
                      static_cast<int>(experts),
                      static_cast<int>(o.k),
                      grouped ? static_cast<int>(o.groups) : 1,
                      grouped ? static_cast<int>(o.keep_groups) : 1,
                      o.scoring,
                      o.grouping,
                      o.normalise && o.k > 1,
                      static_cast<float>(o.scaling)};
  check_launch(launch_route(p, current_stream()), who);
  return out;
#else
  (void)logits, (void)bias, (void)o;
  no_cuda("route_experts_cuda");
#endif
}

}  // namespace ponder::kernels
