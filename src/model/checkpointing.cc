#include "model/checkpointing.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

namespace ponder::model {
namespace {

struct AutocastState {
  at::DeviceType device;
  bool enabled;
  at::ScalarType dtype;

  static AutocastState of(at::DeviceType device) {
    return {device, at::autocast::is_autocast_enabled(device),
            at::autocast::get_autocast_dtype(device)};
  }
  void apply() const {
    at::autocast::set_autocast_enabled(device, enabled);
    at::autocast::set_autocast_dtype(device, dtype);
  }
};

class Recompute : public torch::autograd::Node {
 public:
  Recompute(TensorFunction fn, std::vector<at::Tensor> inputs, AutocastState autocast)
      : fn_(std::move(fn)), inputs_(std::move(inputs)), autocast_(autocast) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    std::vector<at::Tensor> leaves;
    for (const auto& in : inputs_)
      leaves.push_back(in.defined() ? in.detach().requires_grad_(in.requires_grad()) : in);
    std::vector<at::Tensor> outputs;
    {
      at::AutoGradMode grad_mode(true);
      const AutocastState outer = AutocastState::of(autocast_.device);
      autocast_.apply();
      outputs = fn_(leaves);
      outer.apply();
    }
    std::vector<at::Tensor> roots, root_grads;
    for (std::size_t i = 0; i < outputs.size(); ++i)
      if (grads[i].defined() && outputs[i].defined() && outputs[i].requires_grad()) {
        roots.push_back(outputs[i]);
        root_grads.push_back(grads[i]);
      }
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);
    torch::autograd::variable_list input_grads;
    for (const auto& leaf : leaves)
      input_grads.push_back(leaf.defined() && leaf.requires_grad() ? leaf.grad() : at::Tensor());
    return input_grads;
  }

  void release_variables() override { inputs_.clear(); }

 private:
  TensorFunction fn_;
  std::vector<at::Tensor> inputs_;
  AutocastState autocast_;
};

}  // namespace

std::vector<at::Tensor> checkpointed(TensorFunction fn, const std::vector<at::Tensor>& inputs) {
  std::vector<at::Tensor> outputs;
  {
    at::NoGradGuard no_grad;
    outputs = fn(inputs);
  }
  const at::DeviceType device = inputs.empty() ? at::kCPU : inputs.front().device().type();
  const auto node = std::shared_ptr<Recompute>(
      new Recompute(std::move(fn), inputs, AutocastState::of(device)), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(at::ArrayRef<at::Tensor>(inputs)));
  for (auto& out : outputs) torch::autograd::set_history(out, node);
  return outputs;
}

}  // namespace ponder::model
