// Helpers for the kernel tests: skipping without a GPU, relative error in FP64, and poisoned
// outputs so unwritten elements show up.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include "kernels/binding.h"
#include "model/config.h"

#define PONDER_REQUIRE_GPU()                                            \
  if (!::ponder::kernels::built_with_cuda() || !at::hasCUDA())          \
  GTEST_SKIP() << "no CUDA device (built with CUDA: "                   \
               << (::ponder::kernels::built_with_cuda() ? "yes" : "no") \
               << "); the kernel is tested on the GPU machine"

namespace ponder::kernels::testing {

// ||got - want|| / ||want|| in FP64 (on the CPU).
inline double relative_error(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kCPU, at::kDouble), w = want.to(at::kCPU, at::kDouble);
  return ((g - w).norm() / w.norm()).item<double>();
}

// Fraction of elements that are bitwise equal.
inline double fraction_equal(const at::Tensor& got, const at::Tensor& want) {
  return got.eq(want).to(at::kDouble).mean().item<double>();
}

// DeepSeek-V2-Lite's YaRN RoPE scaling (factor 40 over 4,096 positions), the kernels' test case.
inline model::ModelConfig yarn_config() {
  model::ModelConfig c;
  c.rope_theta = 10000;
  c.rope_scaling.type = "yarn";
  c.rope_scaling.factor = 40;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.beta_fast = 32;
  c.rope_scaling.beta_slow = 1;
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  return c;
}

}  // namespace ponder::kernels::testing
