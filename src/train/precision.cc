#include "train/precision.h"

#include <ATen/autocast_mode.h>

namespace ponder::train {

bool use_bf16(const std::string& precision, at::Device device) {
  return precision == "bf16" || (precision == "auto" && device.is_cuda());
}

AutocastScope::AutocastScope(at::Device device, bool enabled)
    : device_(device.type()), enabled_(enabled) {
  if (!enabled_) return;
  was_enabled_ = at::autocast::is_autocast_enabled(device_);
  previous_dtype_ = at::autocast::get_autocast_dtype(device_);
  at::autocast::set_autocast_enabled(device_, true);
  at::autocast::set_autocast_dtype(device_, at::kBFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_enabled(device_, was_enabled_);
  at::autocast::set_autocast_dtype(device_, previous_dtype_);
}

}  // namespace ponder::train
