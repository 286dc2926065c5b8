#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/sampling_kernel.h"

namespace ponder::kernels {
namespace {

using device::to_float;
using u64 = unsigned long long;

constexpr int kBlock = 1024;
constexpr int kWarps = kBlock / 32;
constexpr int kBuckets = 256;  // radix digits of 8 bits
// Probabilities become integers (unnormalised weight exp((l - max) / T) in [0, 1] times 2^40) so
// that masses add up exactly and in any order: the same seed picks the same token every run.
constexpr float kMassScale = 1099511627776.0f;

// Order-preserving map of a float to an unsigned key: larger float, larger key.
__device__ __forceinline__ std::uint32_t order_key(float v) {
  const std::uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float from_key(std::uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key ^ 0x80000000u) : ~key);
}

// The kept part of a row in stable descending order (larger logit first, then lower index):
// every element with a key above `key`, and those equal to it up to `index`.
struct Cut {
  std::uint32_t key = 0;
  u64 index = ~0ull;
  __device__ bool keeps(std::uint32_t k, std::int64_t i) const {
    return k > key || (k == key && static_cast<u64>(i) <= index);
  }
};

// Where a walk in stable descending order reached its target: the key of that element, and how
// much of the target was left on entering that key's class of equal elements.
struct Selection {
  std::uint32_t key;
  u64 remaining;
};

struct Row {
  float max, inv_temperature;
  __device__ u64 weight(float logit) const {
    return __float2ull_rz(expf((logit - max) * inv_temperature) * kMassScale);
  }
};

struct Shared {
  unsigned lo[kBuckets], hi[kBuckets];  // 64-bit histogram split in two 32-bit halves
  float f[kWarps];
  u64 u[kWarps];
  std::int64_t index[kWarps];
  unsigned bucket;
  u64 remaining;
  unsigned min_key;
  u64 found;
};

// Calls f(index, logit) for every element of the row; 16-byte loads when kVec > 1 (the launcher
// checks alignment). Each thread sees its elements in increasing index order.
template <typename T, int kVec, typename F>
__device__ __forceinline__ void for_each(const T* row, std::int64_t n, F&& f) {
  const std::int64_t full = n / kVec * kVec;
  for (std::int64_t i = threadIdx.x * kVec; i < full; i += kBlock * kVec) {
    const auto pack = device::load_pack<T, kVec>(row + i);
#pragma unroll
    for (int j = 0; j < kVec; ++j) f(i + j, to_float(pack.v[j]));
  }
  for (std::int64_t i = full + threadIdx.x; i < n; i += kBlock) f(i, to_float(row[i]));
}

// Adds v to bucket b of the split histogram with 32-bit atomics (64-bit shared atomics are
// compare-and-swap loops on sm_90): the carry out of the low half is detected from its old value.
__device__ __forceinline__ void hist_add(Shared& s, int b, u64 v) {
  const unsigned v_lo = static_cast<unsigned>(v);
  unsigned v_hi = static_cast<unsigned>(v >> 32);
  const unsigned old = atomicAdd(&s.lo[b], v_lo);
  if (old > 0xffffffffu - v_lo) ++v_hi;
  if (v_hi) atomicAdd(&s.hi[b], v_hi);
}

__device__ __forceinline__ u64 warp_inclusive_scan(u64 v) {
  const int lane = threadIdx.x % 32;
  for (int o = 1; o < 32; o *= 2) {
    const u64 t = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += t;
  }
  return v;
}

// Warp 0: walks the histogram from the top bucket down and records the bucket where the running
// total first reaches `target` (1 <= target <= histogram total), and what remains of the target
// inside it.
__device__ void find_bucket(Shared& s, u64 target) {
  const int lane = threadIdx.x;
  constexpr int kPerLane = kBuckets / 32;
  u64 values[kPerLane], sum = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int b = kBuckets - 1 - (lane * kPerLane + j);
    values[j] = (static_cast<u64>(s.hi[b]) << 32) | s.lo[b];
    sum += values[j];
  }
  const u64 inclusive = warp_inclusive_scan(sum);
  u64 before = inclusive - sum;
  if (before >= target || target > inclusive) return;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    if (before + values[j] >= target) {
      s.bucket = kBuckets - 1 - (lane * kPerLane + j);
      s.remaining = target - before;
      return;
    }
    before += values[j];
  }
}

// Walks the kept elements in stable descending order until their measure (count, or mass when
// by_mass) reaches `target` (at most the kept total), 8 key bits at a time from the top.
template <typename T, int kVec>
__device__ Selection radix_select(const T* row, std::int64_t n, const Row& r, bool by_mass,
                                  const Cut& cut, u64 target, Shared& s) {
  std::uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kBuckets; b += kBlock) s.lo[b] = s.hi[b] = 0;
    __syncthreads();
    int run_bucket = 0;
    u64 run = 0;  // consecutive hits of one bucket are added once: fewer contended atomics
    for_each<T, kVec>(row, n, [&](std::int64_t i, float logit) {
      const std::uint32_t key = order_key(logit);
      if ((key & mask) != prefix || !cut.keeps(key, i)) return;
      const u64 v = by_mass ? r.weight(logit) : 1;
      if (v == 0) return;
      const int b = (key >> shift) & (kBuckets - 1);
      if (b != run_bucket && run) {
        hist_add(s, run_bucket, run);
        run = 0;
      }
      run_bucket = b;
      run += v;
    });
    if (run) hist_add(s, run_bucket, run);
    __syncthreads();
    if (threadIdx.x < 32) find_bucket(s, target);
    __syncthreads();
    prefix |= s.bucket << shift;
    mask |= static_cast<std::uint32_t>(kBuckets - 1) << shift;
    target = s.remaining;
    __syncthreads();
  }
  return {prefix, target};
}

// Total mass of the kept elements.
template <typename T, int kVec>
__device__ u64 kept_mass(const T* row, std::int64_t n, const Row& r, const Cut& cut, Shared& s) {
  u64 mass = 0;
  for_each<T, kVec>(row, n, [&](std::int64_t i, float logit) {
    if (cut.keeps(order_key(logit), i)) mass += r.weight(logit);
  });
  return device::block_sum<kBlock>(mass, s.u);
}

// Smallest key among the kept elements whose weight is at least `threshold` (min-p relative to
// the top token, whose weight is the scale itself).
template <typename T, int kVec>
__device__ std::uint32_t min_p_key(const T* row, std::int64_t n, const Row& r, const Cut& cut,
                                   double threshold, Shared& s) {
  if (threadIdx.x == 0) s.min_key = 0xffffffffu;
  __syncthreads();
  std::uint32_t best = 0xffffffffu;
  for_each<T, kVec>(row, n, [&](std::int64_t i, float logit) {
    const std::uint32_t key = order_key(logit);
    if (cut.keeps(key, i) && key < best && static_cast<double>(r.weight(logit)) >= threshold)
      best = key;
  });
  atomicMin(&s.min_key, best);
  __syncthreads();
  return s.min_key;
}

// Exclusive prefix sum over the block; `total` gets the block's sum.
__device__ u64 block_exclusive_scan(u64 v, u64& total, Shared& s) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const u64 inclusive = warp_inclusive_scan(v);
  if (lane == 31) s.u[warp] = inclusive;
  __syncthreads();
  if (warp == 0) s.u[lane] = warp_inclusive_scan(s.u[lane]);
  __syncthreads();
  const u64 result = (warp ? s.u[warp - 1] : 0) + inclusive - v;
  total = s.u[kWarps - 1];
  __syncthreads();
  return result;
}

// First index (in token order) at which the running sum of value(index, logit) reaches
// `target` (n - 1 if it never does).
template <typename T, int kVec, typename V>
__device__ std::int64_t ordered_find(const T* row, std::int64_t n, V&& value, u64 target,
                                     Shared& s) {
  if (threadIdx.x == 0) s.found = static_cast<u64>(n - 1);
  u64 running = 0;
  for (std::int64_t base = 0; base < n; base += kBlock * kVec) {
    const std::int64_t first = base + threadIdx.x * kVec;
    u64 w[kVec], local = 0;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      w[j] = first + j < n ? value(first + j, to_float(row[first + j])) : 0;
      local += w[j];
    }
    u64 total = 0;
    const u64 before = running + block_exclusive_scan(local, total, s);
    if (before < target && target <= before + local) {
      u64 c = before;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        c += w[j];
        if (c >= target) {
          s.found = static_cast<u64>(first + j);
          break;
        }
      }
    }
    running += total;
    if (running >= target) break;
  }
  __syncthreads();
  return static_cast<std::int64_t>(s.found);
}

// The cut just after the element where `sel` stopped: the members of its key's class that are
// kept count in token order, each with the class's weight (1 when counting).
template <typename T, int kVec>
__device__ Cut cut_at(const T* row, std::int64_t n, const Row& r, bool by_mass,
                      const Selection& sel, const Cut& cut, Shared& s) {
  const u64 w = by_mass ? r.weight(from_key(sel.key)) : 1;
  const u64 nth = (sel.remaining + w - 1) / w;
  const std::int64_t index = ordered_find<T, kVec>(
      row, n,
      [&](std::int64_t i, float logit) -> u64 {
        const std::uint32_t k = order_key(logit);
        return k == sel.key && cut.keeps(k, i) ? 1 : 0;
      },
      nth, s);
  return {sel.key, static_cast<u64>(index)};
}

// floor(fraction * mass) + 1, kept within [1, mass]: the 1-based rank in mass units of the
// element a fraction in [0, 1) selects.
__device__ u64 mass_target(double fraction, u64 mass) {
  const double t = floor(fraction * static_cast<double>(mass)) + 1.0;
  return t >= static_cast<double>(mass) ? mass : (t < 1.0 ? 1 : static_cast<u64>(t));
}

// Block argmax of the row (lowest index among equal maxima, as at::argmax).
template <typename T, int kVec>
__device__ void row_argmax(const T* row, std::int64_t n, float& best, std::int64_t& best_index,
                           Shared& s) {
  best = -INFINITY;
  best_index = n;
  for_each<T, kVec>(row, n, [&](std::int64_t i, float logit) {
    if (logit > best) best = logit, best_index = i;
  });
  for (int o = 16; o > 0; o /= 2) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const std::int64_t oi = __shfl_xor_sync(0xffffffffu, best_index, o);
    if (ob > best || (ob == best && oi < best_index)) best = ob, best_index = oi;
  }
  if (threadIdx.x % 32 == 0) s.f[threadIdx.x / 32] = best, s.index[threadIdx.x / 32] = best_index;
  __syncthreads();
  for (int w = 0; w < kWarps; ++w)
    if (s.f[w] > best || (s.f[w] == best && s.index[w] < best_index))
      best = s.f[w], best_index = s.index[w];
  __syncthreads();
}

// The filters in the CPU sampler's order (top-k, top-p, min-p) as cuts in stable descending
// order, then the draw; `mass` enters as the row's total and leaves as the kept mass.
template <typename T, int kVec>
__device__ std::int64_t sample_filtered(const T* row, std::int64_t n, const Row& r,
                                        std::int64_t top_k, float top_p, float min_p, double u,
                                        u64& mass, Shared& s) {
  Cut cut;
  if (top_k > 0 && top_k < n) {
    const Selection sel = radix_select<T, kVec>(row, n, r, false, cut, top_k, s);
    cut = cut_at<T, kVec>(row, n, r, false, sel, cut, s);
    mass = kept_mass<T, kVec>(row, n, r, cut, s);
  }
  if (top_p < 1.f) {
    const double need = ceil(static_cast<double>(top_p) * static_cast<double>(mass));
    const u64 target = need < 1.0 ? 1 : (need > mass ? mass : static_cast<u64>(need));
    const Selection sel = radix_select<T, kVec>(row, n, r, true, cut, target, s);
    cut = cut_at<T, kVec>(row, n, r, true, sel, cut, s);
    mass = kept_mass<T, kVec>(row, n, r, cut, s);
  }
  if (min_p > 0.f) {
    const std::uint32_t key =
        min_p_key<T, kVec>(row, n, r, cut, fminf(min_p, 1.f) * static_cast<double>(kMassScale), s);
    if (key > cut.key) {
      cut = Cut{key, ~0ull};
      mass = kept_mass<T, kVec>(row, n, r, cut, s);
    }
  }
  const Selection sel = radix_select<T, kVec>(row, n, r, true, cut, mass_target(u, mass), s);
  return static_cast<std::int64_t>(cut_at<T, kVec>(row, n, r, true, sel, cut, s).index);
}

template <typename T, int kVec>
__global__ void __launch_bounds__(kBlock) sample_kernel(SampleParams p) {
  __shared__ Shared s;
  const std::int64_t e = blockIdx.x, n = p.vocab;
  const T* row = static_cast<const T*>(p.logits) + (p.row_of ? p.row_of[e] : e) * p.stride;
  float best;
  std::int64_t best_index;
  row_argmax<T, kVec>(row, n, best, best_index, s);
  const float temperature = p.temperature[e];
  const bool greedy = !(temperature > 0.f);
  const Row r{best, greedy ? 1.f : 1.f / temperature};
  float raw_sum = 0.f;
  u64 mass = 0;
  for_each<T, kVec>(row, n, [&](std::int64_t, float logit) {
    raw_sum += expf(logit - best);
    if (!greedy) mass += r.weight(logit);
  });
  const float log_z = logf(device::block_sum<kBlock>(raw_sum, s.f));
  mass = device::block_sum<kBlock>(mass, s.u);
  std::int64_t token = best_index;
  double logprob = 0.0;
  if (!greedy) {
    const std::int64_t top_k = p.top_k[e];
    const float top_p = p.top_p[e], min_p = p.min_p[e];
    if (top_k <= 0 && !(top_p < 1.f) && !(min_p > 0.f))
      token = ordered_find<T, kVec>(
          row, n, [&](std::int64_t, float logit) { return r.weight(logit); },
          mass_target(p.uniform[e], mass), s);
    else
      token = sample_filtered<T, kVec>(row, n, r, top_k, top_p, min_p, p.uniform[e], mass, s);
    logprob =
        log(static_cast<double>(r.weight(to_float(row[token])))) - log(static_cast<double>(mass));
  }
  if (threadIdx.x == 0) {
    p.token[e] = token;
    p.logprob[e] = static_cast<float>(logprob);
    p.raw_logprob[e] = (to_float(row[token]) - best) - log_z;
  }
}

constexpr int kChunkBlock = 256;

__global__ void __launch_bounds__(kChunkBlock) logprob_chunk_kernel(LogprobChunkParams p) {
  __shared__ float scratch[kChunkBlock / 32];
  const std::int64_t r = blockIdx.x;
  const float* row = p.logits + r * p.cols;
  float m = -INFINITY;
  for (std::int64_t c = threadIdx.x; c < p.cols; c += kChunkBlock) m = fmaxf(m, row[c]);
  m = device::block_max<kChunkBlock>(m, scratch);
  float sum = 0.f;
  for (std::int64_t c = threadIdx.x; c < p.cols; c += kChunkBlock) sum += expf(row[c] - m);
  sum = device::block_sum<kChunkBlock>(sum, scratch);
  if (threadIdx.x != 0) return;
  const std::int64_t t = p.targets[r] - p.vocab_start;
  float run_max = m, run_sum = sum, target = p.first ? 0.f : p.target_logit[r];
  if (!p.first) {
    const float old_max = p.running_max[r], old_sum = p.running_sum[r];
    run_max = fmaxf(old_max, m);
    run_sum = old_sum * expf(old_max - run_max) + sum * expf(m - run_max);
  }
  if (t >= 0 && t < p.cols) target = row[t];
  p.running_max[r] = run_max;
  p.running_sum[r] = run_sum;
  p.target_logit[r] = target;
  if (p.last) p.out[r] = target - (run_max + logf(run_sum));
}

template <typename T>
int launch_sample_typed(const SampleParams& p, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vector = reinterpret_cast<std::uintptr_t>(p.logits) % 16 == 0 && p.stride % kVec == 0;
  const dim3 grid(static_cast<unsigned>(p.entries));
  if (vector)
    sample_kernel<T, kVec><<<grid, kBlock, 0, stream>>>(p);
  else
    sample_kernel<T, 1><<<grid, kBlock, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_sample(const SampleParams& p, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch_element_type(
      p.type, [&](auto element) { return launch_sample_typed<decltype(element)>(p, s); });
}

int launch_logprob_chunk(const LogprobChunkParams& p, void* stream) {
  logprob_chunk_kernel<<<static_cast<unsigned>(p.rows), kChunkBlock, 0,
                         static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace ponder::kernels
