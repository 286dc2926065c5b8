#include "dist/data_parallel.h"

#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace ponder::dist {
namespace {

std::vector<at::Tensor> checked(std::vector<at::Tensor> params) {
  if (params.empty()) throw Error("dist::DataParallel: no parameters");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    if (!p.is_contiguous() || p.scalar_type() != params[0].scalar_type() ||
        p.device() != params[0].device())
      throw Error(fmt::format(
          "dist::DataParallel: parameter {} ({} on {}) must be contiguous and share the first "
          "parameter's dtype and device ({} on {})",
          i, c10::toString(p.scalar_type()), p.device().str(),
          c10::toString(params[0].scalar_type()), params[0].device().str()));
  }
  return params;
}

}  // namespace

DataParallel::DataParallel(ProcessGroup& group, std::vector<at::Tensor> params,
                           train::AdamWOptions options)
    : group_(group), params_(checked(std::move(params))), optimizer_(shard_layout(), options) {
  const auto opts = params_[0].options().requires_grad(false);
  flat_ = at::zeros({shard_size_ * group_.world_size()}, opts);
  shard_ = at::zeros({shard_size_}, opts);
  c10::NoGradGuard no_grad;
  pack(flat_);
  group_.broadcast(flat_, 0);
  unpack(flat_);
}

std::vector<at::Tensor> DataParallel::shard_layout() {
  std::int64_t total = 0;
  for (const auto& p : params_) {
    offsets_.push_back(total);
    total += p.numel();
  }
  const std::int64_t world = group_.world_size();
  shard_size_ = (total + world - 1) / world;
  shard_begin_ = shard_size_ * group_.rank();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::int64_t begin = std::max(offsets_[i], shard_begin_);
    const std::int64_t end = std::min(offsets_[i] + params_[i].numel(), shard_end());
    if (begin >= end) continue;
    segments_.push_back({i, begin - offsets_[i], begin - shard_begin_, end - begin});
    shard_views_.push_back(
        params_[i].detach().view(-1).narrow(0, begin - offsets_[i], end - begin));
  }
  return shard_views_;
}

void DataParallel::pack(at::Tensor& flat) const {
  for (std::size_t i = 0; i < params_.size(); ++i)
    flat.narrow(0, offsets_[i], params_[i].numel()).copy_(params_[i].detach().view(-1));
}

void DataParallel::unpack(const at::Tensor& flat) {
  for (std::size_t i = 0; i < params_.size(); ++i)
    params_[i].detach().view(-1).copy_(flat.narrow(0, offsets_[i], params_[i].numel()));
}

at::Tensor DataParallel::reduced_gradient_flags() {
  at::Tensor flags = at::zeros({static_cast<std::int64_t>(params_.size())},
                               params_[0].options().dtype(at::kFloat).requires_grad(false));
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i].grad().defined()) flags[static_cast<std::int64_t>(i)] = 1;
  group_.all_reduce_sum(flags);
  return flags.cpu();
}

double DataParallel::step(double lr, double max_norm) {
  c10::NoGradGuard no_grad;
  const at::Tensor flags = reduced_gradient_flags();
  flat_.zero_();
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i].grad().defined())
      flat_.narrow(0, offsets_[i], params_[i].numel()).copy_(params_[i].grad().reshape(-1));
  group_.reduce_scatter_sum(shard_, flat_);
  for (std::size_t k = 0; k < segments_.size(); ++k) {
    const Segment& s = segments_[k];
    shard_views_[k].mutable_grad() = flags[static_cast<std::int64_t>(s.param)].item<float>() > 0
                                         ? shard_.narrow(0, s.shard_offset, s.length)
                                         : at::Tensor();
  }
  at::Tensor square_sum =
      at::full({1}, train::grad_square_sum(shard_views_), params_[0].options().dtype(at::kDouble));
  group_.all_reduce_sum(square_sum);
  const double norm = std::sqrt(square_sum.item<double>());
  train::clip_grads_to(shard_views_, norm, max_norm);
  optimizer_.step(lr);
  for (std::size_t k = 0; k < segments_.size(); ++k)
    shard_.narrow(0, segments_[k].shard_offset, segments_[k].length).copy_(shard_views_[k]);
  group_.all_gather(flat_, shard_);
  unpack(flat_);
  zero_grad();
  return norm;
}

std::vector<at::Tensor> DataParallel::gather_moments(const std::vector<at::Tensor>& shard_moments) {
  at::Tensor shard = at::zeros({shard_size_}, shard_moments.empty() ? at::TensorOptions(at::kFloat)
                                                                    : shard_moments[0].options());
  for (std::size_t k = 0; k < segments_.size(); ++k)
    shard.narrow(0, segments_[k].shard_offset, segments_[k].length).copy_(shard_moments[k]);
  at::Tensor flat = at::empty({shard_size_ * group_.world_size()}, shard.options());
  group_.all_gather(flat, shard);
  std::vector<at::Tensor> full;
  for (std::size_t i = 0; i < params_.size(); ++i)
    full.push_back(flat.narrow(0, offsets_[i], params_[i].numel()).view(params_[i].sizes()));
  return full;
}

train::AdamWState DataParallel::full_state() {
  return {gather_moments(optimizer_.exp_avg()), gather_moments(optimizer_.exp_avg_sq()),
          optimizer_.steps()};
}

void DataParallel::load_state(const train::AdamWState& state) {
  if (state.exp_avg.size() != params_.size() || state.exp_avg_sq.size() != params_.size())
    throw Error(fmt::format("dist::DataParallel: optimizer state for {} parameters, expected {}",
                            state.exp_avg.size(), params_.size()));
  for (std::size_t k = 0; k < segments_.size(); ++k) {
    const Segment& s = segments_[k];
    for (auto [full, shard] : {std::pair{&state.exp_avg, &optimizer_.exp_avg()},
                               std::pair{&state.exp_avg_sq, &optimizer_.exp_avg_sq()}}) {
      const at::Tensor& source = (*full)[s.param];
      if (source.numel() != params_[s.param].numel())
        throw Error(
            fmt::format("dist::DataParallel: optimizer state of parameter {} has {} "
                        "elements, expected {}",
                        s.param, source.numel(), params_[s.param].numel()));
      (*shard)[k].copy_(source.reshape(-1).narrow(0, s.param_offset, s.length));
    }
  }
  optimizer_.set_steps(state.steps);
}

void DataParallel::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
  optimizer_.zero_grad();
}

}  // namespace ponder::dist
