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

// The KV pages an engine can use at once: one scratch page (the decode graphs' padding rows)
// plus, for each of the `sequences` of its largest generate call, the pages of the longest
// sequence (`tokens`: longest prompt + max_tokens, within the model's context) rounded up to
// whole pages of `block_size` tokens. Prompts shared by a group's samples only lower the need.
std::int64_t cache_blocks_needed(std::int64_t sequences, std::int64_t tokens,
                                 std::int64_t block_size);

// The rollout engines' options: BF16 weights on a GPU get 64-token pages (the MLA decode
// kernel's), as many as rollout.gpu_memory_utilization of the free GPU memory holds; anything
// else 4,096 pages of 16 tokens; either way at most cache_blocks_needed(sequences, tokens). The
// cache dtype is rollout.kv_cache_dtype.
engine::EngineOptions rollout_engine_options(const RolloutSection& rollout, at::ScalarType dtype,
                                             const at::Device& device, std::int64_t sequences,
                                             std::int64_t tokens);

}  // namespace ponder::train
