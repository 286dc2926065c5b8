// AdamW on plain tensor lists (FP32 state, decoupled weight decay), global-norm gradient
// clipping and the warmup + constant/cosine learning-rate schedule.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace ponder::train {

struct AdamWOptions {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// Optimizer state in full (one FP32 moment tensor per parameter, parameter-shaped), as
// checkpoints store it whatever the number of processes that trained.
struct AdamWState {
  std::vector<at::Tensor> exp_avg, exp_avg_sq;
  std::int64_t steps = 0;
};

// Zero moments shaped like `params`, no steps.
AdamWState adamw_state_like(const std::vector<at::Tensor>& params);

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions options);
  // One update with the given learning rate; parameters without a gradient are skipped.
  void step(double lr);
  void zero_grad();
  std::int64_t steps() const { return step_; }
  // Moment estimates (one per parameter, in order) and the step count, for exact resume.
  std::vector<at::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<at::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  void set_steps(std::int64_t steps) { step_ = steps; }

 private:
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  std::int64_t step_ = 0;
};

// Scales gradients so their global L2 norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);
// The two halves of clip_grad_norm, for gradients sharded across processes: the sum of squared
// gradient entries (FP64), and scaling gradients whose total norm is `norm` down to max_norm.
double grad_square_sum(const std::vector<at::Tensor>& params);
void clip_grads_to(const std::vector<at::Tensor>& params, double norm, double max_norm);

double scheduled_lr(double peak, std::int64_t step, std::int64_t warmup, std::int64_t total,
                    const std::string& schedule);

}  // namespace ponder::train
