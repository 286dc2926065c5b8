#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/device_util.cuh"
#include "kernels/moe_route_kernel.h"

namespace ponder::kernels {
namespace {

using device::warp_max;
using device::warp_sum;

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr unsigned kAll = 0xffffffffu;

// A candidate of the top-k: its choice value, expert id and unbiased score.
struct Candidate {
  float value;
  int expert;
  float score;
};

// Higher value first, the lower expert on ties; an expert id of -1 loses to everything.
__device__ __forceinline__ bool beats(const Candidate& a, const Candidate& b) {
  if (a.expert < 0) return false;
  if (b.expert < 0) return true;
  return a.value > b.value || (a.value == b.value && a.expert < b.expert);
}

__device__ __forceinline__ Candidate warp_best(Candidate c) {
  for (int o = 16; o > 0; o /= 2) {
    const Candidate other{__shfl_xor_sync(kAll, c.value, o), __shfl_xor_sync(kAll, c.expert, o),
                          __shfl_xor_sync(kAll, c.score, o)};
    if (beats(other, c)) c = other;
  }
  return c;
}

// Softmax or sigmoid of the lane's logits (expert lane + 32 i), as ATen computes them in FP32.
template <int kPer>
__device__ void affinities(const RouteParams& p, const float* logits, float (&s)[kPer]) {
  const int lane = threadIdx.x % 32;
  float top = -INFINITY;
  for (int i = 0; i < kPer; ++i) {
    const int e = lane + 32 * i;
    s[i] = e < p.experts ? logits[e] : -INFINITY;
    top = fmaxf(top, s[i]);
  }
  if (p.scoring == RouteScoring::kSigmoid) {
    for (int i = 0; i < kPer; ++i) s[i] = 1.0f / (1.0f + expf(-s[i]));
    return;
  }
  top = warp_max(top);
  float sum = 0;
  for (int i = 0; i < kPer; ++i) {
    s[i] = lane + 32 * i < p.experts ? expf(s[i] - top) : 0.0f;
    sum += s[i];
  }
  sum = warp_sum(sum);
  for (int i = 0; i < kPer; ++i) s[i] /= sum;
}

// Bit g set for each of the keep_groups groups with the best group scores (ties: lower group).
template <int kPer>
__device__ unsigned kept_groups(const RouteParams& p, const float (&c)[kPer]) {
  const int lane = threadIdx.x % 32, per_group = p.experts / p.groups;
  float mine = -INFINITY;
  for (int g = 0; g < p.groups; ++g) {
    float first = -INFINITY, second = -INFINITY;  // the lane's best two in group g
    for (int i = 0; i < kPer; ++i) {
      const int e = lane + 32 * i;
      if (e >= p.experts || e / per_group != g) continue;
      second = fmaxf(second, fminf(first, c[i]));
      first = fmaxf(first, c[i]);
    }
    for (int o = 16; o > 0; o /= 2) {
      const float f = __shfl_xor_sync(kAll, first, o), s = __shfl_xor_sync(kAll, second, o);
      second = fmaxf(fminf(first, f), fmaxf(second, s));
      first = fmaxf(first, f);
    }
    if (lane == g) mine = p.grouping == RouteGroups::kTopTwoSum ? first + second : first;
  }
  unsigned kept = 0;
  Candidate group{mine, lane < p.groups ? lane : -1, 0.0f};
  for (int j = 0; j < p.keep_groups; ++j) {
    const Candidate best = warp_best(group);
    kept |= 1u << best.expert;
    if (lane == best.expert) group.expert = -1;
  }
  return kept;
}

// One warp per token: scores, group mask, k rounds of a warp arg-max, normalised weights.
template <int kPer>
__global__ void __launch_bounds__(kThreads) route_kernel(RouteParams p) {
  const std::int64_t t = std::int64_t{blockIdx.x} * kWarps + threadIdx.x / 32;
  if (t >= p.tokens) return;
  const int lane = threadIdx.x % 32;
  float s[kPer], c[kPer];
  affinities<kPer>(p, p.logits + t * p.experts, s);
  for (int i = 0; i < kPer; ++i) {
    const int e = lane + 32 * i;
    if (e < p.experts) p.scores[t * p.experts + e] = s[i];
    c[i] = s[i] + (p.bias && p.grouping != RouteGroups::kNone && e < p.experts ? p.bias[e] : 0.f);
  }
  if (p.grouping != RouteGroups::kNone) {
    const unsigned kept = kept_groups<kPer>(p, c);
    const float fill = p.grouping == RouteGroups::kTopTwoSum ? -INFINITY : 0.0f;
    for (int i = 0; i < kPer; ++i) {
      const int e = lane + 32 * i;
      if (e < p.experts && !(kept >> (e / (p.experts / p.groups)) & 1u)) c[i] = fill;
    }
  }
  unsigned taken = 0;
  int my_expert = 0;
  float my_weight = 0;
  for (int j = 0; j < p.k; ++j) {
    Candidate best{-INFINITY, -1, 0.0f};
    for (int i = 0; i < kPer; ++i) {
      const Candidate here{c[i], lane + 32 * i, s[i]};
      if (here.expert < p.experts && !(taken >> i & 1u) && beats(here, best)) best = here;
    }
    best = warp_best(best);
    if (best.expert % 32 == lane) taken |= 1u << (best.expert / 32);
    if (lane == j) my_expert = best.expert, my_weight = best.score;
  }
  if (p.normalise) my_weight /= warp_sum(lane < p.k ? my_weight : 0.0f) + 1e-20f;
  if (lane < p.k) {
    p.chosen[t * p.k + lane] = my_expert;
    p.weights[t * p.k + lane] = my_weight * p.scaling;
  }
}

template <int kPer>
int launch(const RouteParams& p, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((p.tokens + kWarps - 1) / kWarps);
  route_kernel<kPer><<<blocks, kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_route(const RouteParams& p, void* stream) {
  if (p.tokens <= 0) return 0;
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.experts <= 32) return launch<1>(p, s);
  if (p.experts <= 64) return launch<2>(p, s);
  if (p.experts <= 128) return launch<4>(p, s);
  return launch<8>(p, s);
}

}  // namespace ponder::kernels
