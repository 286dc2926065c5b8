// Independent GPU work overlapped on a second stream, behind a header without CUDA types: the MoE
// layer computes its shared experts while the routed ones are routed, sorted and multiplied.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <utility>

namespace ponder::kernels {

// Queues `side` on a pooled side stream, ordered after the work queued so far on the current
// stream, then `main` on the current stream, which is then ordered after both; returns
// {main(), side()}. Legal inside CUDA graph capture (the side stream joins the recording). On the
// CPU, or in a build without CUDA, `main` runs and then `side`.
std::pair<at::Tensor, at::Tensor> run_beside(const std::function<at::Tensor()>& main,
                                             const std::function<at::Tensor()>& side,
                                             const at::Device& device);

}  // namespace ponder::kernels
