// Mixed precision for training forwards: which compute dtype a recipe asks for on a device, and
// a scope that autocasts to it while FP32 master weights and optimizer state stay as they are.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace ponder::train {

// "auto" is BF16 on CUDA and FP32 on the CPU; "bf16" and "fp32" are taken as asked.
bool use_bf16(const std::string& precision, at::Device device);

// Autocasts eligible ops (matmuls, linears) on `device` to BF16 while alive, when `enabled`;
// backward passes run outside it and follow the dtypes the forward recorded.
class AutocastScope {
 public:
  AutocastScope(at::Device device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType device_;
  bool enabled_, was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace ponder::train
