#include "train/adamw.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <numbers>

namespace ponder::train {

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p, at::kFloat));
    exp_avg_sq_.push_back(at::zeros_like(p, at::kFloat));
  }
}

AdamWState adamw_state_like(const std::vector<at::Tensor>& params) {
  AdamWState state;
  for (const auto& p : params) {
    state.exp_avg.push_back(at::zeros(p.sizes(), at::kFloat));
    state.exp_avg_sq.push_back(at::zeros(p.sizes(), at::kFloat));
  }
  return state;
}

void AdamW::step(double lr) {
  c10::NoGradGuard no_grad;
  ++step_;
  const double bias1 = 1 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bias2 = 1 - std::pow(options_.beta2, static_cast<double>(step_));
  for (std::size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i];
    if (!p.grad().defined()) continue;
    const at::Tensor g = p.grad().to(at::kFloat);
    p.mul_(1 - lr * options_.weight_decay);
    exp_avg_[i].mul_(options_.beta1).add_(g, 1 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
    const at::Tensor denom = (exp_avg_sq_[i] / bias2).sqrt_().add_(options_.eps);
    p.add_((exp_avg_[i] / denom).to(p.scalar_type()), -lr / bias1);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

double grad_square_sum(const std::vector<at::Tensor>& params) {
  c10::NoGradGuard no_grad;
  double total = 0;
  for (const auto& p : params)
    if (p.grad().defined()) total += p.grad().to(at::kDouble).pow(2).sum().item<double>();
  return total;
}

void clip_grads_to(const std::vector<at::Tensor>& params, double norm, double max_norm) {
  c10::NoGradGuard no_grad;
  if (max_norm > 0 && norm > max_norm)
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(max_norm / (norm + 1e-6));
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  const double norm = std::sqrt(grad_square_sum(params));
  clip_grads_to(params, norm, max_norm);
  return norm;
}

double scheduled_lr(double peak, std::int64_t step, std::int64_t warmup, std::int64_t total,
                    const std::string& schedule) {
  if (warmup > 0 && step < warmup)
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule != "cosine" || total <= warmup) return peak;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return peak * 0.5 * (1 + std::cos(std::numbers::pi * std::min(1.0, progress)));
}

}  // namespace ponder::train
