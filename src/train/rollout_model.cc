#include "train/rollout_model.h"

#include <c10/core/GradMode.h>
#include <fmt/core.h>

#include "core/error.h"

namespace ponder::train {

at::ScalarType rollout_dtype(const std::string& name, const at::Device& device) {
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp32") return at::kFloat;
  if (name == "auto") return device.is_cuda() ? at::kBFloat16 : at::kFloat;
  throw Error("rollout.dtype: unsupported value '" + name +
              "' (expected one of: auto, bf16, fp32)");
}

void copy_weights(model::CausalLM& from, model::CausalLM& to) {
  const c10::NoGradGuard no_grad;
  auto& source = from.named_parameters();
  auto& target = to.named_parameters();
  if (source.size() != target.size())
    throw Error("copy_weights: " + std::to_string(source.size()) + " parameters into " +
                std::to_string(target.size()));
  for (std::size_t i = 0; i < source.size(); ++i) {
    const auto& [name, tensor] = source[i];
    if (target[i].first != name || !target[i].second.sizes().equals(tensor.sizes()))
      throw Error("copy_weights: " + name + " " + c10::str(tensor.sizes()) + " into " +
                  target[i].first + " " + c10::str(target[i].second.sizes()));
    target[i].second.copy_(tensor);
  }
}

std::int64_t cache_blocks_needed(std::int64_t sequences, std::int64_t tokens,
                                 std::int64_t block_size) {
  if (sequences < 1 || tokens < 1 || block_size < 1)
    throw Error(fmt::format(
        "cache_blocks_needed: {} sequences of {} tokens in pages of {}, expected each >= 1",
        sequences, tokens, block_size));
  return 1 + sequences * ((tokens + block_size - 1) / block_size);
}

engine::EngineOptions rollout_engine_options(const RolloutSection& rollout, at::ScalarType dtype,
                                             const at::Device& device, std::int64_t sequences,
                                             std::int64_t tokens) {
  engine::EngineOptions options{.block_size = 16,
                                .num_blocks = 4096,
                                .show_progress = false,
                                .kv_cache_dtype = model::parse_kv_cache_dtype(
                                    rollout.kv_cache_dtype, "rollout.kv_cache_dtype")};
  if (device.is_cuda() && dtype == at::kBFloat16) {
    options.block_size = 64;
    options.num_blocks = 0;
    options.memory_fraction = rollout.gpu_memory_utilization;
  }
  options.max_blocks = cache_blocks_needed(sequences, tokens, options.block_size);
  return options;
}

}  // namespace ponder::train
