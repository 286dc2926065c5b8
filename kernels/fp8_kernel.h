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
  // kBlocks: when set, also writes the transpose of each of the rows / batch_rows stacked
  // matrices x = [batch_rows, cols] each (batch_rows = rows, or a multiple of 128) into data_t
  // [batch, cols, batch_rows], from the same read of x.
  void* data_t = nullptr;
  std::int64_t batch_rows = 0;
  // kTransposedTiles: rows cut into segments ending at segment_ends[0 .. segments) (device int64,
  // non-decreasing, each a multiple of 128 but the last, which is rows); segment g = rows
  // [start, end) writes its x^T [cols, end - start] at data + start * cols and its scales
  // [cols, ceil((end - start) / 128)] at scale + start / 128 * cols. nullptr: one segment.
  const std::int64_t* segment_ends = nullptr;
  std::int64_t segments = 0;
};

// Returns the CUDA error code of the launch (0 on success).
int launch_fp8_quantize(const Fp8QuantParams& params, void* stream);

}  // namespace ponder::kernels
