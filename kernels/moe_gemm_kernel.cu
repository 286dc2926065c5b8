#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma.cuh"
#include "kernels/moe_gemm_kernel.h"

namespace ponder::kernels {
namespace {

using device::cp_async16;
using device::cp_async_commit;
using device::cp_async_wait;
using device::ldmatrix_x4;
using device::mma;

// One CTA: 8 warps, 128 weight rows of one group (output columns; SwiGLU: 64 gate rows and the
// matching 64 up rows), the group's token rows 64 at a time. Warp w multiplies weight rows
// [16w, 16w + 16) with the 64 token rows (mma.sync m16n8k16, weights as A, tokens as B); K
// streams through shared memory in 64-wide tiles, kStages deep (cp.async). The 16-byte chunks of
// each 128-byte tile row are XOR-swizzled by row % 8 so ldmatrix reads no bank twice.
constexpr int kWarps = 8, kThreads = kWarps * 32, kStages = 4;
constexpr int kRows = kGroupedRows, kBK = kGroupedK, kBN = kGroupedN, kChunks = kBK / 8;
constexpr int kTiles = kRows / 8;  // mma n-tiles of token rows per warp
constexpr int kAccRow = kRows + 1;

struct Stage {
  __nv_bfloat16 w[kBN][kBK];
  __nv_bfloat16 x[kRows][kBK];
};
constexpr int kSmem = static_cast<int>(sizeof(Stage)) * kStages;
static_assert(kBN * kAccRow * sizeof(float) <= sizeof(Stage) * kStages, "epilogue fits");

// Element offset of 16-byte chunk `chunk` of tile row `row`.
__device__ __forceinline__ int swizzled(int row, int chunk) { return (chunk ^ (row & 7)) * 8; }

struct Block {
  const __nv_bfloat16* x;  // the block's first token row
  const __nv_bfloat16* w;  // the group's weight matrix
  int rows;                // valid token rows (<= kRows)
  int n0;                  // first output column (SwiGLU: of the inner width)
};

__device__ __forceinline__ std::int64_t weight_row(const GroupedGemmParams& p, int n0, int i) {
  if (!p.swiglu) return n0 + i;
  return i < kBN / 2 ? n0 + i : p.n / 2 + n0 + (i - kBN / 2);
}

__device__ __forceinline__ void load_tile(const GroupedGemmParams& p, const Block& b, Stage& s,
                                          int tile) {
  const int k0 = tile * kBK;
  for (int c = threadIdx.x; c < kBN * kChunks; c += kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    cp_async16(&s.w[r][swizzled(r, ch)], b.w + weight_row(p, b.n0, r) * p.k + k0 + ch * 8, 16);
  }
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks, ch = c % kChunks;
    const bool valid = r < b.rows;
    cp_async16(&s.x[r][swizzled(r, ch)], valid ? b.x + std::int64_t{r} * p.k + k0 + ch * 8 : b.x,
               valid ? 16 : 0);
  }
  cp_async_commit();
}

// acc[j]: weight rows (g, g + 8) of this warp x token rows 8j + 2t, + 1 over all of K.
__device__ void multiply(const GroupedGemmParams& p, const Block& b, Stage* stages,
                         float (&acc)[kTiles][4]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, tiles = p.k / kBK;
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < tiles)
      load_tile(p, b, stages[s], s);
    else
      cp_async_commit();
  }
  for (int kt = 0; kt < tiles; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile kt landed for all threads; stage (kt - 1) % kStages is free
    const int next = kt + kStages - 1;
    if (next < tiles)
      load_tile(p, b, stages[next % kStages], next);
    else
      cp_async_commit();
    const Stage& st = stages[kt % kStages];
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      std::uint32_t a[4];
      const int ar = warp * 16 + lane % 16;
      ldmatrix_x4(a, &st.w[ar][swizzled(ar, 2 * ks + lane / 16)]);
#pragma unroll
      for (int j = 0; j < kTiles; j += 2) {
        std::uint32_t bf[4];
        const int br = (j + lane / 16) * 8 + lane % 8;
        ldmatrix_x4(bf, &st.x[br][swizzled(br, 2 * ks + (lane / 8) % 2)]);
        mma(acc[j], a, bf[0], bf[1]);
        mma(acc[j + 1], a, bf[2], bf[3]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the stages: the epilogue reuses them
}

// Accumulators to shared memory as [weight row][token row], then rows of the output: plain
// columns, or silu(gate) * up of the two halves, rounded to BF16 once.
__device__ void store(const GroupedGemmParams& p, const Block& b, std::int64_t row0, float* out,
                      const float (&acc)[kTiles][4]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < kTiles; ++j)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float* row = out + (warp * 16 + g + 8 * half) * kAccRow + 8 * j + 2 * t;
      row[0] = acc[j][2 * half];
      row[1] = acc[j][2 * half + 1];
    }
  __syncthreads();
  const int width = p.swiglu ? kBN / 2 : kBN, per_thread = width * kRows / kThreads;
  const int r = threadIdx.x / (width / per_thread),
            c0 = threadIdx.x % (width / per_thread) * per_thread;
  if (r < b.rows) {
    const std::int64_t cols = p.swiglu ? p.n / 2 : p.n;
    auto* y = static_cast<__nv_bfloat16*>(p.y) + (row0 + r) * cols + b.n0 + c0;
    for (int c = 0; c < per_thread; c += 8) {
      __align__(16) __nv_bfloat16 v[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float gate = out[(c0 + c + i) * kAccRow + r];
        v[i] = __float2bfloat16(p.swiglu ? gate / (1.0f + __expf(-gate)) *
                                               out[(kBN / 2 + c0 + c + i) * kAccRow + r]
                                         : gate);
      }
      *reinterpret_cast<uint4*>(y + c) = *reinterpret_cast<const uint4*>(v);
    }
  }
  __syncthreads();  // the next row block's loads overwrite `out`
}

__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(GroupedGemmParams p) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto* stages = reinterpret_cast<Stage*>(smem);
  const int group = blockIdx.y;
  const int begin = group == 0 ? 0 : p.ends[group - 1], end = p.ends[group];
  const int n0 = blockIdx.x * (p.swiglu ? kBN / 2 : kBN);
  const auto* w = static_cast<const __nv_bfloat16*>(p.w) + std::int64_t{group} * p.n * p.k;
  for (int row0 = begin; row0 < end; row0 += kRows) {
    const Block b{static_cast<const __nv_bfloat16*>(p.x) + std::int64_t{row0} * p.k, w,
                  min(kRows, end - row0), n0};
    float acc[kTiles][4] = {};
    multiply(p, b, stages, acc);
    store(p, b, row0, reinterpret_cast<float*>(smem), acc);
  }
}

}  // namespace

int launch_grouped_gemm(const GroupedGemmParams& p, void* stream) {
  if (p.groups == 0) return 0;
  cudaError_t rc =
      cudaFuncSetAttribute(grouped_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  const dim3 grid(static_cast<unsigned>(p.n / kBN),  // SwiGLU: n / 2 inner columns, 64 a CTA
                  static_cast<unsigned>(p.groups));
  grouped_gemm_kernel<<<grid, kThreads, kSmem, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
