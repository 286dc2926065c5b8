// Raw-pointer interface of the FP8 E4M3 quantisation kernels (no LibTorch here): 1x128 tiles along
// rows, along columns (writing the transpose), or 128x128 blocks, with FP32 scales amax / 448.
#pragma once

#include <cstdint>

#include "kernels/kernel_types.h"

namespace ponder::kernels {

enum class Fp8QuantMode {
  kTiles,            // data [rows, cols], scale [rows, ceil(cols / 128)]
  kTransposedTiles,  // data [cols, rows] (x transposed), scale [cols, ceil(rows / 128)]
  kBlocks            // data [rows, cols], scale [ceil(rows / 128), ceil(cols / 128)]
};

struct Fp8QuantParams {
  const void* x = nullptr;  // [rows, cols], row stride `stride` elements, unit column stride
  void* data = nullptr;     // float8_e4m3fn output, contiguous in the layout the mode names
  float* scale = nullptr;   // contiguous
  std::int64_t rows = 0, cols = 0, stride = 0;
  ElementType type = ElementType::kFloat32;
  Fp8QuantMode mode = Fp8QuantMode::kTiles;
};

// Returns the CUDA error code of the launch (0 on success).
int launch_fp8_quantize(const Fp8QuantParams& params, void* stream);

}  // namespace ponder::kernels
