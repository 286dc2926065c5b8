#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/fp8_kernel.h"

namespace ponder::kernels {
namespace {

using device::to_float;

constexpr int kTile = 128;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTransposeCols = 64;  // columns of x per block of the transposing quantiser
constexpr float kMax = 448.0f;
constexpr float kMinAmax = 1e-12f;  // as the ATen reference: zero tiles keep data 0

// The reference's arithmetic step by step (IEEE division, clamp, round to nearest even).
__device__ __forceinline__ float tile_scale(float amax) { return fmaxf(amax, kMinAmax) / kMax; }

__device__ __forceinline__ __nv_fp8_storage_t to_e4m3(float v, float scale) {
  const float q = fminf(fmaxf(v / scale, -kMax), kMax);
  return __nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3);
}

// One warp per 1x128 tile; lane l holds elements 4l .. 4l + 3 of the tile.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_tiles_kernel(Fp8QuantParams p) {
  const std::int64_t tiles_per_row = (p.cols + kTile - 1) / kTile;
  const std::int64_t tile = blockIdx.x * std::int64_t{kWarps} + threadIdx.x / 32;
  if (tile >= p.rows * tiles_per_row) return;
  const std::int64_t row = tile / tiles_per_row, col0 = (tile % tiles_per_row) * kTile;
  const int lane = threadIdx.x % 32;
  const T* x = static_cast<const T*>(p.x) + row * p.stride;
  float v[4];
  float amax = 0.0f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const std::int64_t c = col0 + lane * 4 + j;
    v[j] = c < p.cols ? to_float(x[c]) : 0.0f;
    amax = fmaxf(amax, fabsf(v[j]));
  }
  const float scale = tile_scale(device::warp_max(amax));
  auto* out = static_cast<__nv_fp8_storage_t*>(p.data) + row * p.cols;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const std::int64_t c = col0 + lane * 4 + j;
    if (c < p.cols) out[c] = to_e4m3(v[j], scale);
  }
  if (lane == 0) p.scale[tile] = scale;
}

// The segment [start, end) holding row r0 (the first whose end exceeds it), or all rows.
__device__ void find_segment(const Fp8QuantParams& p, std::int64_t r0, std::int64_t& start,
                             std::int64_t& end) {
  if (p.segment_ends == nullptr) {
    start = 0;
    end = p.rows;
    return;
  }
  std::int64_t lo = 0, hi = p.segments - 1;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (p.segment_ends[mid] > r0) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  start = lo > 0 ? p.segment_ends[lo - 1] : 0;
  end = p.segment_ends[lo];
}

// A block stages x[r0 : r0 + 128, c0 : c0 + 64] in shared memory column by column; warp w then
// quantises columns 8w .. 8w + 7 as 1x128 tiles of x transposed, lane l holding rows 4l .. 4l + 3.
// Rows r0 .. r0 + 127 lie in one segment, whose transpose [cols, len] is written contiguously.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_transposed_kernel(Fp8QuantParams p) {
  __shared__ float staged[kTransposeCols][kTile + 1];
  const std::int64_t r0 = std::int64_t{blockIdx.y} * kTile;
  const std::int64_t c0 = std::int64_t{blockIdx.x} * kTransposeCols;
  std::int64_t start = 0, end = 0;
  find_segment(p, r0, start, end);
  const std::int64_t len = end - start, len_tiles = (len + kTile - 1) / kTile;
  const T* x = static_cast<const T*>(p.x);
  for (int i = threadIdx.x; i < kTile * kTransposeCols; i += kThreads) {
    const int r = i / kTransposeCols, c = i % kTransposeCols;
    const bool inside = r0 + r < end && c0 + c < p.cols;
    staged[c][r] = inside ? to_float(x[(r0 + r) * p.stride + c0 + c]) : 0.0f;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  auto* out = static_cast<__nv_fp8_storage_t*>(p.data) + start * p.cols;
  float* scale = p.scale + start / kTile * p.cols;
  for (int c = warp * (kTransposeCols / kWarps); c < (warp + 1) * (kTransposeCols / kWarps); ++c) {
    if (c0 + c >= p.cols) break;
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) amax = fmaxf(amax, fabsf(staged[c][lane * 4 + j]));
    const float s = tile_scale(device::warp_max(amax));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const std::int64_t r = r0 + lane * 4 + j;
      if (r < end) out[(c0 + c) * len + r - start] = to_e4m3(staged[c][lane * 4 + j], s);
    }
    if (lane == 0) scale[(c0 + c) * len_tiles + (r0 - start) / kTile] = s;
  }
}

// One block per 128x128 block: amax over the block, then a second pass writes the data and,
// when asked, stages the block's bytes to write them transposed as well.
template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_blocks_kernel(Fp8QuantParams p) {
  __shared__ float scratch[kWarps];
  __shared__ __nv_fp8_storage_t staged_t[kTile][kTile + 4];  // [column][row] of the block
  const std::int64_t r0 = std::int64_t{blockIdx.y} * kTile;
  const std::int64_t c0 = std::int64_t{blockIdx.x} * kTile;
  const T* x = static_cast<const T*>(p.x);
  auto inside = [&](int i) { return r0 + i / kTile < p.rows && c0 + i % kTile < p.cols; };
  auto at = [&](int i) { return x[(r0 + i / kTile) * p.stride + c0 + i % kTile]; };
  float amax = 0.0f;
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads)
    if (inside(i)) amax = fmaxf(amax, fabsf(to_float(at(i))));
  const float scale = tile_scale(device::block_max<kThreads>(amax, scratch));
  auto* out = static_cast<__nv_fp8_storage_t*>(p.data);
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    if (!inside(i)) continue;
    const __nv_fp8_storage_t q = to_e4m3(to_float(at(i)), scale);
    out[(r0 + i / kTile) * p.cols + c0 + i % kTile] = q;
    staged_t[i % kTile][i / kTile] = q;
  }
  if (threadIdx.x == 0) p.scale[blockIdx.y * gridDim.x + blockIdx.x] = scale;
  if (p.data_t == nullptr) return;
  __syncthreads();
  // Blocks never straddle two matrices (batch_rows is rows or a multiple of 128).
  const std::int64_t matrix = r0 / p.batch_rows, row0 = r0 % p.batch_rows;
  auto* out_t = static_cast<__nv_fp8_storage_t*>(p.data_t) + matrix * p.cols * p.batch_rows;
  for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
    const int c = i / kTile, r = i % kTile;
    if (r0 + r < p.rows && c0 + c < p.cols)
      out_t[(c0 + c) * p.batch_rows + row0 + r] = staged_t[c][r];
  }
}

template <typename T>
int launch_typed(const Fp8QuantParams& p, cudaStream_t stream) {
  const auto row_tiles = static_cast<unsigned>((p.rows + kTile - 1) / kTile);
  const auto col_tiles = static_cast<unsigned>((p.cols + kTile - 1) / kTile);
  switch (p.mode) {
    case Fp8QuantMode::kTiles: {
      const std::int64_t tiles = p.rows * col_tiles;
      const auto blocks = static_cast<unsigned>((tiles + kWarps - 1) / kWarps);
      quantize_tiles_kernel<T><<<blocks, kThreads, 0, stream>>>(p);
      break;
    }
    case Fp8QuantMode::kTransposedTiles: {
      const dim3 grid(static_cast<unsigned>((p.cols + kTransposeCols - 1) / kTransposeCols),
                      row_tiles);
      quantize_transposed_kernel<T><<<grid, kThreads, 0, stream>>>(p);
      break;
    }
    case Fp8QuantMode::kBlocks:
      quantize_blocks_kernel<T><<<dim3(col_tiles, row_tiles), kThreads, 0, stream>>>(p);
      break;
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_fp8_quantize(const Fp8QuantParams& p, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(p.type,
                               [&](auto element) { return launch_typed<decltype(element)>(p, s); });
}

}  // namespace ponder::kernels
