// Types shared by the raw-pointer kernel interfaces (no LibTorch, no CUDA headers): the element
// types the kernels read and write.
#pragma once

namespace ponder::kernels {

enum class ElementType { kFloat32, kBFloat16, kFloat16 };

}  // namespace ponder::kernels
