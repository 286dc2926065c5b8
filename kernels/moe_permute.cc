#include "kernels/moe_permute.h"

#include <limits>
#include <string>

#include "core/error.h"
#include "kernels/moe_permute_kernel.h"

namespace ponder::kernels {

namespace {

// The sort kernel's limits: its passes keep up to 8 x experts int32 counts in shared memory.
constexpr std::int64_t kMaxExperts = kPermuteMaxExperts;

// The combine kernel's inputs: y [T k, cols] of a float type, int64 position [T k], float32
// weights [T, k]; shared and x [T, cols] and weight [cols] in y's dtype.
bool combine_shapes_fit(const at::Tensor& y, const at::Tensor& position, const at::Tensor& weights,
                        const std::optional<at::Tensor>& shared, const at::Tensor* x,
                        const at::Tensor* weight) {
  const bool typed = y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16 ||
                     y.scalar_type() == at::kHalf;
  if (!typed || y.dim() != 2 || weights.dim() != 2 || weights.scalar_type() != at::kFloat ||
      position.scalar_type() != at::kLong || position.numel() != weights.numel() ||
      y.size(0) != weights.numel())
    return false;
  const auto token_rows = [&](const at::Tensor& t) {
    return t.scalar_type() == y.scalar_type() && t.dim() == 2 && t.size(0) == weights.size(0) &&
           t.size(1) == y.size(1);
  };
  return (!shared || token_rows(*shared)) && (!x || token_rows(*x)) &&
         (!weight || (weight->scalar_type() == y.scalar_type() && weight->dim() == 1 &&
                      weight->size(0) == y.size(1)));
}

bool combine_fits(const at::Tensor& y, const at::Tensor& position, const at::Tensor& weights,
                  const std::optional<at::Tensor>& shared, const at::Tensor* x,
                  const at::Tensor* weight) {
  return use_kernel({y, position, weights, shared.value_or(y), x ? *x : y, weight ? *weight : y}) &&
         combine_shapes_fit(y, position, weights, shared, x, weight);
}

// The combine kernel (+ shared) and, with x and weight, the residual add and norm after it:
// {out, normed} (normed undefined without x).
AddRmsNorm launch_combine(const char* who, const at::Tensor& y, const at::Tensor& position,
                          const at::Tensor& weights, const std::optional<at::Tensor>& shared,
                          const at::Tensor* x, const at::Tensor* weight, double eps) {
#ifdef PONDER_WITH_CUDA
  require_cuda(who, {y, position, weights, shared.value_or(y), x ? *x : y, weight ? *weight : y});
  if (!combine_shapes_fit(y, position, weights, shared, x, weight))
    throw Error(std::string(who) +
                ": expected y [T k, cols], int64 position [T k], float32 weights [T, k], and "
                "shared [T, cols], x [T, cols], norm weight [cols] in y's dtype");
  const at::Tensor rows = y.contiguous(), pos = position.contiguous(), w = weights.contiguous();
  const at::Tensor added = shared ? shared->contiguous() : at::Tensor();
  const at::Tensor res = x ? x->contiguous() : at::Tensor(), nw = x ? weight->contiguous() : res;
  const at::Tensor out = at::empty({weights.size(0), y.size(1)}, y.options());
  const at::Tensor normed = x ? at::empty_like(out) : at::Tensor();
  const auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; };
  const ExpertCombineParams p{rows.data_ptr(),
                              pos.data_ptr<std::int64_t>(),
                              w.data_ptr<float>(),
                              ptr(added),
                              ptr(res),
                              ptr(nw),
                              out.data_ptr(),
                              ptr(normed),
                              weights.size(0),
                              y.size(1),
                              static_cast<int>(weights.size(1)),
                              static_cast<float>(eps),
                              element_type(y, who)};
  if (out.numel() > 0) check_launch(launch_expert_combine(p, current_stream()), who);
  return {out, normed};
#else
  (void)y, (void)position, (void)weights, (void)shared, (void)x, (void)weight, (void)eps;
  no_cuda(who);
#endif
}

}  // namespace

ExpertPermutation permute_by_expert_reference(const at::Tensor& x, const at::Tensor& experts,
                                              std::int64_t n_experts) {
  const at::Tensor flat = experts.reshape(-1);
  const at::Tensor order = std::get<1>(at::sort(flat, std::optional<bool>(true), 0));
  const at::Tensor sorted = flat.index_select(0, order);
  const at::Tensor ends = at::searchsorted(sorted, at::arange(n_experts, flat.options()),
                                           /*out_int32=*/true, /*right=*/true);
  const at::Tensor position =
      at::empty_like(order).index_copy_(0, order, at::arange(order.size(0), order.options()));
  return {order, position, ends, x.index_select(0, at::floor_divide(order, experts.size(1)))};
}

ExpertPermutation permute_by_expert(const at::Tensor& x, const at::Tensor& experts,
                                    std::int64_t n_experts) {
  if (use_kernel({x, experts}) && x.dim() == 2 && experts.dim() == 2 &&
      experts.scalar_type() == at::kLong && n_experts > 0 && n_experts <= kMaxExperts &&
      experts.size(0) == x.size(0))
    return permute_by_expert_cuda(x, experts, n_experts);
  return permute_by_expert_reference(x, experts, n_experts);
}

ExpertPermutation permute_by_expert_cuda(const at::Tensor& x, const at::Tensor& experts,
                                         std::int64_t n_experts) {
#ifdef PONDER_WITH_CUDA
  const char* who = "permute_by_expert_cuda";
  require_cuda(who, {x, experts});
  if (x.dim() != 2 || experts.dim() != 2 || experts.scalar_type() != at::kLong ||
      experts.size(0) != x.size(0))
    throw Error(std::string(who) + ": expected x [T, hidden] and int64 experts [T, k]");
  const std::int64_t pairs = experts.numel();
  if (n_experts <= 0 || n_experts > kMaxExperts || pairs > std::numeric_limits<std::int32_t>::max())
    throw Error(std::string(who) + ": expected 1 to " + std::to_string(kMaxExperts) +
                " experts and fewer than 2^31 pairs, got " + std::to_string(n_experts) + " and " +
                std::to_string(pairs));
  const at::Tensor ids = experts.contiguous(), rows_in = x.contiguous();
  const auto longs = ids.options();
  ExpertPermutation out{at::empty({pairs}, longs), at::empty({pairs}, longs),
                        at::empty({n_experts}, longs.dtype(at::kInt)),
                        at::empty({pairs, x.size(1)}, x.options())};
  if (pairs == 0) return {out.order, out.position, out.ends.zero_(), out.rows};
  const int e = static_cast<int>(n_experts);
  const at::Tensor scratch = at::empty({expert_sort_scratch(pairs, e)}, longs.dtype(at::kInt));
  const ExpertSortParams p{ids.data_ptr<std::int64_t>(),
                           out.order.data_ptr<std::int64_t>(),
                           out.position.data_ptr<std::int64_t>(),
                           out.ends.data_ptr<std::int32_t>(),
                           scratch.data_ptr<std::int32_t>(),
                           rows_in.data_ptr(),
                           out.rows.data_ptr(),
                           pairs,
                           static_cast<std::int64_t>(x.size(1) * x.element_size()),
                           e,
                           static_cast<int>(experts.size(1))};
  check_launch(launch_expert_sort(p, current_stream()), who);
  return out;
#else
  (void)x, (void)experts, (void)n_experts;
  no_cuda("permute_by_expert_cuda");
#endif
}

at::Tensor combine_experts_reference(const at::Tensor& y, const at::Tensor& position,
                                     const at::Tensor& weights,
                                     const std::optional<at::Tensor>& shared) {
  const std::int64_t k = weights.size(1);
  const at::Tensor routed = (y.index_select(0, position).view({-1, k, y.size(1)}) *
                             weights.to(y.scalar_type()).unsqueeze(-1))
                                .sum(1);
  return shared ? routed + *shared : routed;
}

at::Tensor combine_experts(const at::Tensor& y, const at::Tensor& position,
                           const at::Tensor& weights, const std::optional<at::Tensor>& shared) {
  if (combine_fits(y, position, weights, shared, nullptr, nullptr))
    return combine_experts_cuda(y, position, weights, shared);
  return combine_experts_reference(y, position, weights, shared);
}

at::Tensor combine_experts_cuda(const at::Tensor& y, const at::Tensor& position,
                                const at::Tensor& weights,
                                const std::optional<at::Tensor>& shared) {
  return launch_combine("combine_experts_cuda", y, position, weights, shared, nullptr, nullptr, 0)
      .sum;
}

AddRmsNorm combine_experts_add_rms_norm_reference(const at::Tensor& y, const at::Tensor& position,
                                                  const at::Tensor& weights,
                                                  const std::optional<at::Tensor>& shared,
                                                  const at::Tensor& x, const at::Tensor& weight,
                                                  double eps) {
  return add_rms_norm_reference(x, combine_experts_reference(y, position, weights, shared), weight,
                                eps);
}

AddRmsNorm combine_experts_add_rms_norm(const at::Tensor& y, const at::Tensor& position,
                                        const at::Tensor& weights,
                                        const std::optional<at::Tensor>& shared,
                                        const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (combine_fits(y, position, weights, shared, &x, &weight))
    return combine_experts_add_rms_norm_cuda(y, position, weights, shared, x, weight, eps);
  return add_rms_norm(x, combine_experts(y, position, weights, shared), weight, eps);
}

AddRmsNorm combine_experts_add_rms_norm_cuda(const at::Tensor& y, const at::Tensor& position,
                                             const at::Tensor& weights,
                                             const std::optional<at::Tensor>& shared,
                                             const at::Tensor& x, const at::Tensor& weight,
                                             double eps) {
  return launch_combine("combine_experts_add_rms_norm_cuda", y, position, weights, shared, &x,
                        &weight, eps);
}

}  // namespace ponder::kernels
