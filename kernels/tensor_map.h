// Host side of the TMA kernels: tensor maps (copy-engine descriptors) of row-major BF16 matrices
// read in 128-byte-swizzled boxes of 64 columns, encoded through the driver found via the runtime.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ponder::kernels {

// A [rows, k] BF16 row-major matrix (k % 64 == 0, 16-byte aligned) read in boxes of box_rows x 64
// (box_rows <= 256), 128-byte swizzled; rows past the matrix arrive as zeros. False when the
// driver has no encoder or rejects the map.
inline bool encode_bf16_rows(CUtensorMap& map, const void* data, std::int64_t rows, int k,
                             int box_rows) {
  using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;
  // looked up once through the runtime (no libcuda link)
  static const EncodeTiled encode = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      return EncodeTiled{nullptr};
    return reinterpret_cast<EncodeTiled>(f);
  }();
  if (encode == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(k) * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)}, steps[2] = {1, 1};
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(data), dims, strides,
                box, steps, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace ponder::kernels
