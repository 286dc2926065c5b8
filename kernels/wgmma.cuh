// Hopper (sm_90a) building blocks for TMA + wgmma pipelines: 2D tensor maps, copies completing
// on an mbarrier and stores, shared-memory matrix descriptors for 128-byte-swizzled tiles (K- or
// MN-major), and the BF16 wgmma m64nNk16 (N 16, 32, 64, 256; m64n256k16 also with A from
// registers) with FP32 accumulation. Device code: sm_90a.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/mma.cuh"

// wgmma's FP32 accumulator operands: the asm output list of d[0 .. n) ("+f", in order) and the
// matching "{%0, ..., %n-1}" register list of the instruction text.
#define PONDER_WGMMA_F4(d, i) "+f"(d[(i)]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3])
#define PONDER_WGMMA_F8(d, i) PONDER_WGMMA_F4(d, i), PONDER_WGMMA_F4(d, (i) + 4)
#define PONDER_WGMMA_F32(d, i)                                                      \
  PONDER_WGMMA_F8(d, i), PONDER_WGMMA_F8(d, (i) + 8), PONDER_WGMMA_F8(d, (i) + 16), \
      PONDER_WGMMA_F8(d, (i) + 24)
#define PONDER_WGMMA_D8(d) PONDER_WGMMA_F8(d, 0)
#define PONDER_WGMMA_D16(d) PONDER_WGMMA_F8(d, 0), PONDER_WGMMA_F8(d, 8)
#define PONDER_WGMMA_D32(d) PONDER_WGMMA_F32(d, 0)
#define PONDER_WGMMA_D128(d) \
  PONDER_WGMMA_F32(d, 0), PONDER_WGMMA_F32(d, 32), PONDER_WGMMA_F32(d, 64), PONDER_WGMMA_F32(d, 96)
#define PONDER_WGMMA_D8_NAMES "{%0, %1, %2, %3, %4, %5, %6, %7}"
#define PONDER_WGMMA_D16_NAMES \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define PONDER_WGMMA_D32_NAMES                                                        \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, " \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define PONDER_WGMMA_D128_NAMES                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "     \
  "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, " \
  "%35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, " \
  "%52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, " \
  "%69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, " \
  "%86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, "    \
  "%102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, "  \
  "%116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

namespace ponder::kernels::device {

// The dynamic shared memory as a T at a 1024-byte aligned shared-window offset (what TMA's 128-byte
// swizzle and the descriptors' base offset 0 need; the generic address may differ). The launch
// reserves 1 KB more than sizeof(T).
template <typename T>
__device__ __forceinline__ T& aligned_shared(unsigned char* smem_raw) {
  const std::uint32_t pad = (1024 - shared_address(smem_raw) % 1024) % 1024;
  return *reinterpret_cast<T*>(smem_raw + pad);
}

// Thread 0 arms a TMA ring: `full` barriers take the producer's one arrival (plus the copies'
// bytes), `empty` ones `consumers` arrivals; then makes them visible to the async proxy.
template <int kStages>
__device__ __forceinline__ void init_ring(std::uint64_t (&full)[kStages],
                                          std::uint64_t (&empty)[kStages], int consumers) {
  if (threadIdx.x != 0) return;
  for (int s = 0; s < kStages; ++s) {
    mbarrier_init(&full[s], 1);
    mbarrier_init(&empty[s], consumers);
  }
  fence_shared_for_async();
}

// Copy engine: the box of `map` at element coordinates (inner, outer) -> shared `dst` (laid out
// as the map's swizzle says), its bytes counted on `bar`. Rows past the tensor arrive as zeros.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int inner, int outer,
                                            std::uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3}], [%4];\n" ::"r"(shared_address(dst)),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(inner), "r"(outer), "r"(shared_address(bar))
      : "memory");
}

// Copy engine: shared `src` (laid out as the map's swizzle says) -> the box of `map` at element
// coordinates (inner, outer), as one bulk group; the issuing thread waits for it with
// tma_store_wait before the shared memory is reused or the CTA exits.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int inner,
                                             int outer) {
  asm volatile(
      "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n"
      "cp.async.bulk.commit_group;\n" ::"l"(reinterpret_cast<std::uint64_t>(map)),
      "r"(inner), "r"(outer), "r"(shared_address(src))
      : "memory");
}

// Waits until this thread's bulk stores have read their shared memory.
__device__ __forceinline__ void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

// Fetches a tensor map (a __grid_constant__ kernel parameter) into the descriptor cache.
__device__ __forceinline__ void tma_prefetch(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}

// One plain arrival on `bar` (its expected count includes this thread).
__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
}

// Whether the phase with this parity completed, without waiting.
__device__ __forceinline__ bool mbarrier_test(std::uint64_t* bar, int parity) {
  std::uint32_t done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(shared_address(bar)), "r"(parity)
      : "memory");
  return done != 0;
}

// Descriptor of a tile of 8-row groups of 128-byte rows, 128-byte swizzled (the layout
// CU_TENSOR_MAP_SWIZZLE_128B writes for a 64-wide BF16 box), the tile 1024-byte aligned: start
// address >> 4 in bits 0-13, leading offset >> 4 in bits 16-29, 8-row group stride 1024 >> 4 in
// bits 32-45, swizzle mode 1 (128 B) in bits 62-63. K-major (rows along M/N, K within a row): the
// leading offset is unused (16, as CUTLASS sets it) and the 16-wide K slice i starts 32 i bytes
// further (+2 i here). MN-major (rows along K, 64 M/N elements within a row, wgmma's transpose
// bit): `leading_bytes` is the stride from one 64-wide M/N block to the next, and the 16-row K
// slice i starts 2048 i bytes further (+128 i).
__device__ __forceinline__ std::uint64_t smem_descriptor(const void* tile,
                                                         std::uint32_t leading_bytes = 16) {
  return ((shared_address(tile) & 0x3FFFFu) >> 4) | (std::uint64_t{leading_bytes >> 4} << 16) |
         (std::uint64_t{1024 >> 4} << 32) | (std::uint64_t{1} << 62);
}

// Orders this thread's earlier generic shared-memory writes before later async-proxy accesses
// (wgmma operand reads, TMA writes); a barrier between the writers and the readers must follow.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Barrier `id` (1-15; 0 is __syncthreads) among `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Arrives at barrier `id` without waiting: the threads that bar.sync on it (with the same count)
// see this thread's earlier shared-memory writes once they pass.
__device__ __forceinline__ void named_barrier_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Raises (kInc) or lowers this warpgroup's per-thread register limit to kRegs (a multiple of 8 in
// 24-256); every warp of the warpgroup executes it. Lets the consumer warpgroups of a kernel hold
// more accumulators than the launch's even split allows, the producer giving up its share.
template <int kRegs, bool kInc>
__device__ __forceinline__ void set_max_registers() {
  if constexpr (kInc)
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
  else
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
}

// Orders earlier register accesses of the accumulators before the next wgmma.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most kPending committed wgmma groups of this warpgroup are in flight.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving accesses of `v` across an asynchronous wgmma or its wait.
template <int kN>
__device__ __forceinline__ void fence_registers(float (&v)[kN]) {
#pragma unroll
  for (int i = 0; i < kN; ++i) asm volatile("" : "+f"(v[i])::"memory");
}

// d (64 x kN, FP32, warpgroup fragments) = a (64 x 16) b (16 x kN) (+ d when accumulate), both
// BF16 in shared memory; a K-major, b K-major ([kN][16] rows: d = a b^T as stored) or with
// kTransB MN-major ([16][kN] rows); kN is 16, 32, 64 or 256. Thread t of the warpgroup holds
// rows 16 (t / 32) + (t % 32) / 4 + 8 h and columns 8 j + 2 (t % 4) + c in d[4 j + 2 h + c].
template <int kN, bool kTransB = false>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[kN / 2], std::uint64_t a, std::uint64_t b,
                                             bool accumulate) {
  const int scale = accumulate;
  if constexpr (kN == 16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %10, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 " PONDER_WGMMA_D8_NAMES
        ", %8, %9, p, 1, 1, 0, %11;\n}\n"
        : PONDER_WGMMA_D8(d)
        : "l"(a), "l"(b), "r"(scale), "n"(kTransB ? 1 : 0));
  } else if constexpr (kN == 32) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " PONDER_WGMMA_D16_NAMES
        ", %16, %17, p, 1, 1, 0, %19;\n}\n"
        : PONDER_WGMMA_D16(d)
        : "l"(a), "l"(b), "r"(scale), "n"(kTransB ? 1 : 0));
  } else if constexpr (kN == 64) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " PONDER_WGMMA_D32_NAMES
        ", %32, %33, p, 1, 1, 0, %35;\n}\n"
        : PONDER_WGMMA_D32(d)
        : "l"(a), "l"(b), "r"(scale), "n"(kTransB ? 1 : 0));
  } else {
    static_assert(kN == 256, "wgmma_m64k16: N of 16, 32, 64 or 256");
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " PONDER_WGMMA_D128_NAMES
        ", %128, %129, p, 1, 1, 0, %131;\n}\n"
        : PONDER_WGMMA_D128(d)
        : "l"(a), "l"(b), "r"(scale), "n"(kTransB ? 1 : 0));
  }
}

// d (64 x 256, FP32) += a (64 x 16 BF16, this thread's A fragment in registers: rows as d's,
// columns 2 (t % 4) + {0, 1} and + 8 in a[0..3] as pairs (row, row + 8, row, row + 8)) times b
// (16 x 256 BF16 in shared memory, MN-major: wgmma's transpose bit).
__device__ __forceinline__ void wgmma_m64n256k16_rs(float (&d)[128], const std::uint32_t (&a)[4],
                                                    std::uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " PONDER_WGMMA_D128_NAMES
      ", {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"
      : PONDER_WGMMA_D128(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}

}  // namespace ponder::kernels::device

namespace ponder::kernels {

using EncodeTiled = PFN_cuTensorMapEncodeTiled_v12000;

// The driver's tensor-map encoder, looked up once through the runtime (no libcuda link).
inline EncodeTiled tensor_map_encoder() {
  static const EncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess)
      return EncodeTiled{nullptr};
    return reinterpret_cast<EncodeTiled>(f);
  }();
  return fn;
}

// A row-major matrix of `rows` rows `row_bytes` apart, each `cols` elements of `type`, read in
// boxes of box_cols x box_rows laid out as `swizzle` says.
struct TensorMapLayout {
  CUtensorMapDataType type;
  std::int64_t rows, cols, row_bytes;
  int box_cols, box_rows;
  CUtensorMapSwizzle swizzle;
};

// The tensor map of `data` laid out as `m` says. False when the driver refuses it.
inline bool encode_tensor_map(CUtensorMap& map, const void* data, const TensorMapLayout& m) {
  const EncodeTiled fn = tensor_map_encoder();
  if (fn == nullptr) return false;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(m.cols), static_cast<cuuint64_t>(m.rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(m.row_bytes)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(m.box_cols),
                             static_cast<cuuint32_t>(m.box_rows)},
                   steps[2] = {1, 1};
  return fn(&map, m.type, 2, const_cast<void*>(data), dims, strides, box, steps,
            CU_TENSOR_MAP_INTERLEAVE_NONE, m.swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A [rows, cols] BF16 row-major matrix read in boxes of box_rows x 64, 128-byte swizzled (the
// tiles smem_descriptor describes). False when the driver refuses it.
inline bool encode_tensor_map(CUtensorMap& map, const void* data, std::int64_t rows, int cols,
                              int box_rows) {
  return encode_tensor_map(map, data,
                           {CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rows, cols, std::int64_t{cols} * 2,
                            64, box_rows, CU_TENSOR_MAP_SWIZZLE_128B});
}

}  // namespace ponder::kernels
