// Activation checkpointing: run a block of the model without keeping its intermediate activations
// and recompute it, with gradients, when the backward pass reaches it.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace ponder::model {

using TensorFunction = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

// fn(inputs) computed without recording its graph; the outputs' backward reruns fn with gradients
// (under the autocast state of this call) and backpropagates through it, so parameter gradients
// accumulate directly and the inputs receive theirs (torch.utils.checkpoint, reentrant variant).
// Undefined outputs are allowed. fn must be deterministic.
std::vector<at::Tensor> checkpointed(TensorFunction fn, const std::vector<at::Tensor>& inputs);

}  // namespace ponder::model
