// Helpers for the kernel tests: skipping without a GPU, relative error in FP64, and poisoned
// outputs so unwritten elements show up.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include "kernels/binding.h"

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

}  // namespace ponder::kernels::testing
