// The MoE experts' grouped GEMM on Hopper (sm_90a) for many rows per expert (prefill, scoring):
// 128 token rows x 256 weight rows a work item, token rows as wgmma M (two consumer warpgroups of
// 64 rows) and weight rows as N (one m64n256k16 per 16-wide K slice), a TMA + mbarrier ring fed by
// a producer warpgroup that hands its registers to the consumers, a persistent grid walking the
// items of each group column tile by column tile so that CTAs running together share the weights.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/moe_gemm_kernel.h"
#include "kernels/wgmma.cuh"

namespace ponder::kernels {
namespace {

// Warpgroup 0 produces (one thread issues the copies), warpgroups 1 and 2 multiply token rows
// [0, 64) and [64, 128) of the item by all of its 256 weight rows. Plain items cover output
// columns [256 c, 256 c + 256); SwiGLU items the inner columns [128 c, 128 c + 128), their gate
// rows landing in weight rows [0, 128) of the tile and their up rows in [128, 256), so a thread
// holds gate and up of the same output in acc[j] and acc[j + 64].
constexpr int kBM = 128, kBN = kGroupedLargeN, kBK = kGroupedK, kStages = 4;
constexpr int kConsumerThreads = 256, kThreads = kConsumerThreads + 128;
constexpr int kMaxGroups = kGroupedLargeMaxGroups;
static_assert(kBN == 256 && kBK == 64, "tiles are 128 x 256 items, k64");

struct Stage {
  __nv_bfloat16 x[kBM][kBK];  // token rows of the item
  __nv_bfloat16 w[kBN][kBK];  // weight rows: two 128-row boxes
};
static_assert(sizeof(Stage) % 1024 == 0, "each tile stays 1024-byte aligned (128 B swizzle)");

struct Shared {
  Stage stages[kStages];
  std::uint64_t full[kStages];   // the copies of a stage landed (1 arrival + bytes)
  std::uint64_t empty[kStages];  // the consumers are done with a stage (256 arrivals)
  int row_end[kMaxGroups];       // ends[g]
  int tiles_end[kMaxGroups];     // 128-row tiles of groups 0..g
};
constexpr int kSmem = static_cast<int>(sizeof(Shared)) + 1024;  // + room to align to 1024

struct Maps {
  CUtensorMap x, w;  // both in 128 x 64 boxes
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the device code: the sm_90a pass only

// Fills row_end and tiles_end (warp 0 scans the per-group tile counts 32 at a time).
__device__ void count_tiles(const GroupedGemmParams& p, Shared& sh) {
  for (int g = threadIdx.x; g < p.groups; g += kThreads) {
    const int end = p.ends[g], begin = g == 0 ? 0 : p.ends[g - 1];
    sh.row_end[g] = end;
    sh.tiles_end[g] = (end - begin + kBM - 1) / kBM;
  }
  __syncthreads();
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  int carry = 0;
  for (int base = 0; base < p.groups; base += 32) {
    const int g = base + lane;
    int v = g < p.groups ? sh.tiles_end[g] : 0;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int up = __shfl_up_sync(0xFFFFFFFFu, v, d);
      if (lane >= d) v += up;
    }
    if (g < p.groups) sh.tiles_end[g] = v + carry;
    carry += __shfl_sync(0xFFFFFFFFu, v, 31);
  }
}

__device__ __forceinline__ int column_tiles(const GroupedGemmParams& p) {
  return p.swiglu ? p.n / 2 / (kBN / 2) : p.n / kBN;
}

__device__ __forceinline__ int item_count(const GroupedGemmParams& p, const Shared& sh) {
  return sh.tiles_end[p.groups - 1] * column_tiles(p);
}

// An item: its group, first token row, the group's end and its column tile.
struct Item {
  int group, row0, row_end, column;
};

// Items in order of group, then column tile, then row tile.
__device__ Item item_of(const GroupedGemmParams& p, const Shared& sh, int item) {
  const int columns = column_tiles(p), q = item / columns;
  int lo = 0, hi = p.groups - 1;  // the first group with tiles_end > q
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (sh.tiles_end[mid] > q)
      hi = mid;
    else
      lo = mid + 1;
  }
  const int first_tile = lo == 0 ? 0 : sh.tiles_end[lo - 1], tiles = sh.tiles_end[lo] - first_tile;
  const int local = item - first_tile * columns, begin = lo == 0 ? 0 : sh.row_end[lo - 1];
  return {lo, begin + local % tiles * kBM, sh.row_end[lo], local / tiles};
}

__device__ __forceinline__ int stage_of(int it) { return it % kStages; }
__device__ __forceinline__ int round_parity(int it) { return (it / kStages) & 1; }

__device__ void produce(const GroupedGemmParams& p, const Maps& maps, Shared& sh) {
  const int items = item_count(p, sh), tiles = p.k / kBK;
  int it = 0;
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const Item m = item_of(p, sh, item);
    const int base = m.group * p.n;  // the group's first row of w viewed as [groups n, k]
    const int w0 = p.swiglu ? base + m.column * (kBN / 2) : base + m.column * kBN;
    const int w1 = p.swiglu ? w0 + p.n / 2 : w0 + kBN / 2;
    for (int kt = 0; kt < tiles; ++kt, ++it) {
      const int s = stage_of(it);
      device::mbarrier_wait(&sh.empty[s], round_parity(it) ^ 1);  // round 0 passes at once
      device::mbarrier_arrive_expect(&sh.full[s], sizeof(Stage));
      Stage& st = sh.stages[s];
      device::tma_load_2d(&st.x[0][0], &maps.x, kt * kBK, m.row0, &sh.full[s]);
      device::tma_load_2d(&st.w[0][0], &maps.w, kt * kBK, w0, &sh.full[s]);
      device::tma_load_2d(&st.w[kBN / 2][0], &maps.w, kt * kBK, w1, &sh.full[s]);
    }
  }
}

// acc[4 j + 2 h + c]: token row 16 (warp % 4) + lane / 4 + 8 h of this warpgroup's 64, weight
// row 8 j + 2 (lane % 4) + c of the tile, summed over K. `it` advances past the item's K tiles.
__device__ void multiply(const GroupedGemmParams& p, Shared& sh, int half, int& it,
                         float (&acc)[kBN / 2]) {
  const int tiles = p.k / kBK;
  int previous = -1;
  for (int kt = 0; kt < tiles; ++kt, ++it) {
    const int s = stage_of(it);
    device::mbarrier_wait(&sh.full[s], round_parity(it));
    const Stage& st = sh.stages[s];
    const std::uint64_t a = device::smem_descriptor(&st.x[64 * half][0]),
                        b = device::smem_descriptor(&st.w[0][0]);
    device::fence_registers(acc);
    device::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks)  // 16-wide K slices: 32 bytes further each
      device::wgmma_m64k16<kBN>(acc, a + 2 * ks, b + 2 * ks, kt > 0 || ks > 0);
    device::wgmma_commit();
    device::wgmma_wait<1>();  // the previous K tile's products are done: free its stage
    if (previous >= 0) device::mbarrier_arrive(&sh.empty[previous]);
    previous = s;
  }
  device::wgmma_wait<0>();
  device::fence_registers(acc);
  device::mbarrier_arrive(&sh.empty[previous]);
}

// This thread's accumulators to y, rows before the group's end only: two adjacent columns a store.
__device__ void store(const GroupedGemmParams& p, const Item& m, int half,
                      const float (&acc)[kBN / 2]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32 % 4;
  const int cols = p.swiglu ? p.n / 2 : p.n, width = p.swiglu ? kBN / 2 : kBN;
  auto* y = static_cast<__nv_bfloat16*>(p.y);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = m.row0 + 64 * half + 16 * warp + lane / 4 + 8 * h;
    if (row >= m.row_end) continue;
    __nv_bfloat16* out = y + std::int64_t{row} * cols + m.column * width + 2 * (lane % 4);
    if (p.swiglu) {
#pragma unroll
      for (int j = 0; j < kBN / 16; ++j) {
        float v[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const float gate = acc[4 * j + 2 * h + c], up = acc[4 * (j + kBN / 16) + 2 * h + c];
          v[c] = __fdividef(gate, 1.0f + __expf(-gate)) * up;
        }
        *reinterpret_cast<__nv_bfloat162*>(out + 8 * j) = __floats2bfloat162_rn(v[0], v[1]);
      }
    } else {
#pragma unroll
      for (int j = 0; j < kBN / 8; ++j)
        *reinterpret_cast<__nv_bfloat162*>(out + 8 * j) =
            __floats2bfloat162_rn(acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
    }
  }
}

// Both warpgroups multiply every item, rows past the group too: letting the one whose 64 rows all
// lie past the group skip its wgmmas left it running ahead of the other on the ring, waiting on
// each copy as it landed, and lost 10-25% on the H200 (bench/RESULTS.md).
__device__ void consume(const GroupedGemmParams& p, Shared& sh, int half) {
  const int items = item_count(p, sh);
  int it = 0;
  float acc[kBN / 2];
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const Item m = item_of(p, sh, item);
    multiply(p, sh, half, it, acc);
    store(p, m, half, acc);
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(kThreads, 1)
    grouped_gemm_wgmma_large_kernel(const __grid_constant__ Maps maps, GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  auto& sh = device::aligned_shared<Shared>(smem_raw);
  device::init_ring(sh.full, sh.empty, kConsumerThreads);
  count_tiles(p, sh);
  __syncthreads();
  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    device::set_max_registers<40, false>();
    if (threadIdx.x == 0) {
      device::tma_prefetch(&maps.x);
      device::tma_prefetch(&maps.w);
      produce(p, maps, sh);
    }
  } else {
    device::set_max_registers<232, true>();
    consume(p, sh, warpgroup - 1);
  }
#else
  (void)maps, (void)p;
  __trap();  // built for sm_90a only; the binding never launches it elsewhere
#endif
}

}  // namespace

int launch_grouped_gemm_wgmma_large(const GroupedGemmParams& p, int multiprocessors, void* stream) {
  if (p.groups == 0 || p.rows == 0) return 0;
  if (p.groups > kMaxGroups || p.k % kBK != 0 || p.k == 0 || p.n % kBN != 0)
    return static_cast<int>(cudaErrorInvalidValue);
  Maps maps;
  if (!encode_tensor_map(maps.x, p.x, p.rows, p.k, kBM) ||
      !encode_tensor_map(maps.w, p.w, std::int64_t{p.groups} * p.n, p.k, kBN / 2))
    return static_cast<int>(cudaErrorInvalidValue);
  const cudaError_t rc = cudaFuncSetAttribute(grouped_gemm_wgmma_large_kernel,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  // at most rows / 128 + groups row tiles, each with n / 256 column tiles (SwiGLU: n / 2 / 128)
  const std::int64_t items = (std::int64_t{p.rows} / kBM + p.groups) * (p.n / kBN);
  const int grid =
      static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(items, multiprocessors)));
  grouped_gemm_wgmma_large_kernel<<<grid, kThreads, kSmem, static_cast<cudaStream_t>(stream)>>>(
      maps, p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
