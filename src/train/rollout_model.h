// The weights GRPO rollouts generate with: the FP32 policy itself, or (BF16 on a GPU, as veRL
// with vLLM does) a BF16 copy refreshed in place from the trained weights, with engine options.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "engine/rollout_engine.h"
#include "model/causal_lm.h"
#include "train/recipe.h"

namespace ponder::train {

// rollout.dtype on `device`: auto (BF16 on CUDA, FP32 on the CPU), bf16 or fp32.
at::ScalarType rollout_dtype(const std::string& name, const at::Device& device);

// Copies `from`'s parameters into `to`'s own tensors, cast to their dtype: addresses stay, so
// engines and recorded CUDA graphs over `to` see the new weights. Throws when they differ in
// names or shapes.
void copy_weights(model::CausalLM& from, model::CausalLM& to);

// The rollout engines' options: BF16 weights on a GPU get 64-token pages (the MLA decode
// kernel's), as many as rollout.gpu_memory_utilization of the free GPU memory holds; anything
// else 4,096 pages of 16 tokens. The cache dtype is rollout.kv_cache_dtype.
engine::EngineOptions rollout_engine_options(const RolloutSection& rollout, at::ScalarType dtype,
                                             const at::Device& device);

}  // namespace ponder::train
