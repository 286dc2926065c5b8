// The MoE experts' grouped GEMM on Hopper (sm_90a) for few rows per expert: A/B swapped so that
// each expert's weight rows fill wgmma's M and its token rows are N (up to 64 a pass, 16, 32 or
// 64 wide, rows past the group computed and dropped), weights and tokens streamed by the copy
// engine (TMA, 128-byte swizzle) into an mbarrier ring filled by a producer warp, FP32 accumulators
// in registers, SwiGLU applied to the gate and up accumulators in registers before the BF16 stores.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/moe_gemm_kernel.h"
#include "kernels/wgmma.cuh"

namespace ponder::kernels {
namespace {

// A CTA: warpgroup 0 (warps 0-3) multiplies, warp 4 issues the copies. A work item is 128 weight
// rows of one group (two 64-row wgmma tiles: plain rows [n0, n0 + 128), or for SwiGLU the gate
// rows [n0, n0 + 64) and the up rows [n / 2 + n0, ...)) times all of the group's token rows in
// passes of up to 64: a pass with 16 or 32 rows left loads and multiplies only 16 or 32 (wgmma
// N and the token box shrink with it). Items go to CTAs round-robin (a persistent grid), and the
// ring of kStages (K tile of 64) x (two weight tiles + one token tile) runs on across passes and
// items, so the copy engine streams without a gap between them.
constexpr int kBM = kGroupedN, kBK = kGroupedK, kMaxBN = kGroupedRows, kStages = 4;
constexpr int kConsumerThreads = 128, kThreads = kConsumerThreads + 32;
static_assert(kBM == 128 && kBK == 64 && kMaxBN == 64, "tiles are two m64 wgmma tiles, k64");

struct Stage {
  __nv_bfloat16 w[2][64][kBK];   // the item's two 64-row weight tiles
  __nv_bfloat16 x[kMaxBN][kBK];  // token rows of the pass (the first 16, 32 or 64)
};
static_assert(sizeof(Stage) % 1024 == 0, "each tile stays 1024-byte aligned (128 B swizzle)");

struct Shared {
  Stage stages[kStages];
  std::uint64_t full[kStages];   // the copies of a stage landed (1 arrival + bytes)
  std::uint64_t empty[kStages];  // the consumers are done with a stage (128 arrivals)
};
constexpr int kSmem = static_cast<int>(sizeof(Shared)) + 1024;  // + room to align to 1024

// Weights [groups n, k] in 64 x 64 boxes; tokens [rows, k] in 16, 32 and 64 x 64 boxes.
struct Maps {
  CUtensorMap w, x16, x32, x64;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)  // the device code: the sm_90a pass only

// The item's group, weight rows (rows of the [groups n, k] tensor map) and first output column.
struct Item {
  int group, w0, w1, col0;
};

// Items per group: n / 128 either way (SwiGLU: 64 of the n / 2 inner columns an item).
__device__ __forceinline__ Item item_of(const GroupedGemmParams& p, int item) {
  const int blocks = p.n / kBM;
  const int group = item / blocks, block = item % blocks, base = group * p.n;
  if (p.swiglu) {
    const int c = block * 64;
    return {group, base + c, base + p.n / 2 + c, c};
  }
  const int c = block * kBM;
  return {group, base + c, base + c + 64, c};
}

__device__ __forceinline__ int group_begin(const GroupedGemmParams& p, int g) {
  return g == 0 ? 0 : p.ends[g - 1];
}

// Token rows a pass computes when `left` rows of its group remain: 16, 32 or 64.
__device__ __forceinline__ int pass_width(int left) {
  return left <= 16 ? 16 : left <= 32 ? 32 : 64;
}

// Slot `it` of the ring: its stage and the parity of its round.
__device__ __forceinline__ int stage_of(int it) { return it % kStages; }
__device__ __forceinline__ int round_parity(int it) { return (it / kStages) & 1; }

__device__ void produce(const GroupedGemmParams& p, const Maps& maps, Shared& sh) {
  const int items = p.groups * (p.n / kBM), tiles = p.k / kBK;
  int it = 0;
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const Item m = item_of(p, item);
    const int end = p.ends[m.group];
    for (int row0 = group_begin(p, m.group); row0 < end;) {
      const int width = pass_width(end - row0);
      const CUtensorMap* xmap = width == 16 ? &maps.x16 : width == 32 ? &maps.x32 : &maps.x64;
      const auto bytes = static_cast<std::uint32_t>(sizeof(Stage::w) + width * kBK * 2);
      for (int kt = 0; kt < tiles; ++kt, ++it) {
        const int s = stage_of(it);
        device::mbarrier_wait(&sh.empty[s], round_parity(it) ^ 1);  // round 0 passes at once
        device::mbarrier_arrive_expect(&sh.full[s], bytes);
        Stage& st = sh.stages[s];
        device::tma_load_2d(&st.w[0][0][0], &maps.w, kt * kBK, m.w0, &sh.full[s]);
        device::tma_load_2d(&st.w[1][0][0], &maps.w, kt * kBK, m.w1, &sh.full[s]);
        device::tma_load_2d(&st.x[0][0], xmap, kt * kBK, row0, &sh.full[s]);
      }
      row0 += width;
    }
  }
}

// acc[t][4 j + 2 h + c]: weight row 16 warp + lane / 4 + 8 h of tile t, token row
// 8 j + 2 (lane % 4) + c of the pass, summed over all of K. `it` is the ring slot of the first
// K tile and is advanced past the last.
template <int kN>
__device__ void multiply(const GroupedGemmParams& p, Shared& sh, int& it, float (&acc)[2][kN / 2]) {
  const int tiles = p.k / kBK;
  int previous = -1;
  for (int kt = 0; kt < tiles; ++kt, ++it) {
    const int s = stage_of(it);
    device::mbarrier_wait(&sh.full[s], round_parity(it));
    const Stage& st = sh.stages[s];
    const std::uint64_t a0 = device::smem_descriptor(&st.w[0][0][0]),
                        a1 = device::smem_descriptor(&st.w[1][0][0]),
                        b = device::smem_descriptor(&st.x[0][0]);
    device::fence_registers(acc[0]);
    device::fence_registers(acc[1]);
    device::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {  // 16-wide K slices: 32 bytes further each
      const bool accumulate = kt > 0 || ks > 0;
      device::wgmma_m64k16<kN>(acc[0], a0 + 2 * ks, b + 2 * ks, accumulate);
      device::wgmma_m64k16<kN>(acc[1], a1 + 2 * ks, b + 2 * ks, accumulate);
    }
    device::wgmma_commit();
    device::wgmma_wait<1>();  // the previous K tile's products are done: free its stage
    if (previous >= 0) device::mbarrier_arrive(&sh.empty[previous]);
    previous = s;
  }
  device::wgmma_wait<0>();
  device::fence_registers(acc[0]);
  device::fence_registers(acc[1]);
  device::mbarrier_arrive(&sh.empty[previous]);
}

// This thread's accumulators to y rows [row0, row0 + rows): plain columns, or silu(gate) * up.
template <int kN>
__device__ void store(const GroupedGemmParams& p, const Item& m, int row0, int rows,
                      const float (&acc)[2][kN / 2]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int cols = p.swiglu ? p.n / 2 : p.n;
  auto* y = static_cast<__nv_bfloat16*>(p.y);
#pragma unroll
  for (int j = 0; j < kN / 8; ++j)
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      const int r = 8 * j + 2 * (lane % 4) + c;
      if (r >= rows) continue;
      __nv_bfloat16* out = y + std::int64_t{row0 + r} * cols + m.col0 + 16 * warp + lane / 4;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float first = acc[0][4 * j + 2 * h + c], second = acc[1][4 * j + 2 * h + c];
        if (p.swiglu) {
          out[8 * h] = __float2bfloat16(__fdividef(first, 1.0f + __expf(-first)) * second);
        } else {
          out[8 * h] = __float2bfloat16(first);
          out[64 + 8 * h] = __float2bfloat16(second);
        }
      }
    }
}

template <int kN>
__device__ void run_pass(const GroupedGemmParams& p, Shared& sh, int& it, const Item& m, int row0,
                         int rows) {
  float acc[2][kN / 2];
  multiply<kN>(p, sh, it, acc);
  store<kN>(p, m, row0, rows, acc);
}

__device__ void consume(const GroupedGemmParams& p, Shared& sh) {
  const int items = p.groups * (p.n / kBM);
  int it = 0;
  for (int item = blockIdx.x; item < items; item += gridDim.x) {
    const Item m = item_of(p, item);
    const int end = p.ends[m.group];
    for (int row0 = group_begin(p, m.group); row0 < end;) {
      const int width = pass_width(end - row0), rows = min(width, end - row0);
      if (width == 16)
        run_pass<16>(p, sh, it, m, row0, rows);
      else if (width == 32)
        run_pass<32>(p, sh, it, m, row0, rows);
      else
        run_pass<64>(p, sh, it, m, row0, rows);
      row0 += width;
    }
  }
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

__global__ void __launch_bounds__(kThreads, 2)
    grouped_gemm_wgmma_kernel(const __grid_constant__ Maps maps, GroupedGemmParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char smem_raw[];
  auto& sh = device::aligned_shared<Shared>(smem_raw);
  device::init_ring(sh.full, sh.empty, kConsumerThreads);
  __syncthreads();
  if (threadIdx.x < kConsumerThreads) {
    consume(p, sh);
  } else if (threadIdx.x == kConsumerThreads) {
    for (const CUtensorMap* map : {&maps.w, &maps.x16, &maps.x32, &maps.x64})
      device::tma_prefetch(map);
    produce(p, maps, sh);
  }
#else
  (void)maps, (void)p;
  __trap();  // built for sm_90a only; the binding never launches it elsewhere
#endif
}

}  // namespace

int launch_grouped_gemm_wgmma(const GroupedGemmParams& p, int multiprocessors, void* stream) {
  if (p.groups == 0 || p.rows == 0) return 0;
  Maps maps;
  if (!encode_tensor_map(maps.w, p.w, std::int64_t{p.groups} * p.n, p.k, 64) ||
      !encode_tensor_map(maps.x16, p.x, p.rows, p.k, 16) ||
      !encode_tensor_map(maps.x32, p.x, p.rows, p.k, 32) ||
      !encode_tensor_map(maps.x64, p.x, p.rows, p.k, 64))
    return static_cast<int>(cudaErrorInvalidValue);
  const cudaError_t rc = cudaFuncSetAttribute(grouped_gemm_wgmma_kernel,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (rc != cudaSuccess) return static_cast<int>(rc);
  static const int per_sm = [] {
    int blocks = 1;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, grouped_gemm_wgmma_kernel, kThreads,
                                                      kSmem) != cudaSuccess)
      blocks = 1;
    return std::max(1, blocks);
  }();
  const int items = p.groups * (p.n / kBM);
  const int grid = std::max(1, std::min(items, per_sm * multiprocessors));
  grouped_gemm_wgmma_kernel<<<grid, kThreads, kSmem, static_cast<cudaStream_t>(stream)>>>(maps, p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
