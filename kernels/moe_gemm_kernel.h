// Raw-pointer interface of the MoE experts' grouped GEMMs: BF16 rows sorted by group times each
// group's weight matrix, FP32 accumulation, optionally with SwiGLU fused into the epilogue (no
// LibTorch here). For few rows per group (decode): cp.async + mma.sync, and TMA + wgmma (sm_90a);
// for many (prefill, scoring): TMA + wgmma in 128 x 256 tiles (sm_90a).
#pragma once

#include <cstdint>

namespace ponder::kernels {

// Tile sizes the shapes must divide: K by kGroupedK; N by kGroupedN (plain) or the inner width
// N / 2 by kGroupedN / 2 (SwiGLU). A group's rows go kGroupedRows at a time, each pass reading
// its weights once: efficient up to about that many rows per group.
inline constexpr int kGroupedK = 64, kGroupedN = 128, kGroupedRows = 64;
// The large-tile kernel: N (plain and SwiGLU alike) by kGroupedLargeN, at most this many groups.
inline constexpr int kGroupedLargeN = 256, kGroupedLargeMaxGroups = 1024;

struct GroupedGemmParams {
  const void* x = nullptr;             // [rows, k] bf16, rows of group g at [ends[g-1], ends[g])
  const void* w = nullptr;             // [groups, n, k] bf16 (k contiguous)
  const std::int32_t* ends = nullptr;  // [groups] cumulative row counts
  void* y = nullptr;  // [rows, n] bf16, or [rows, n / 2] with swiglu: silu(x w_gate^T) x w_up^T
  int groups = 0, n = 0, k = 0;
  int rows = 0;         // rows of x (the wgmma kernel's tensor map)
  bool swiglu = false;  // w rows [0, n/2) are the gate, [n/2, n) the up projection
};

// y = x_g w_g^T per group (or the SwiGLU of its two halves). Returns the CUDA error code.
int launch_grouped_gemm(const GroupedGemmParams& params, void* stream);
// The same on Hopper (sm_90a only): each group's weights as wgmma's M, 128 rows a CTA, its token
// rows as N, kGroupedRows a pass; TMA copies into an mbarrier ring fed by a producer warp; a
// persistent grid of up to `multiprocessors` x its occupancy. x and w 16-byte aligned.
int launch_grouped_gemm_wgmma(const GroupedGemmParams& params, int multiprocessors, void* stream);
// Many rows per group on Hopper (sm_90a only): 128 token rows (wgmma M, two consumer warpgroups)
// x 256 weight rows (N; SwiGLU: 128 gate and 128 up rows) a work item, each group's last row tile
// computed in full and its rows past the group dropped; TMA ring fed by a producer warpgroup; a
// persistent grid of `multiprocessors` CTAs. x and w 16-byte aligned, groups <= 1024.
int launch_grouped_gemm_wgmma_large(const GroupedGemmParams& params, int multiprocessors,
                                    void* stream);

}  // namespace ponder::kernels
