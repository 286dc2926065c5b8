#!/usr/bin/env bash
# The routed experts' grouped GEMMs on the GPU machine in one device call: the MoE/engine GPU
# tests, compute-sanitizer memcheck on the grouped GEMM and permutation kernels, bench_moe (torch
# grouped vs few-rows vs wgmma vs large tiles vs dense, and the automatic choice) at 256-16384
# tokens, then bench_rollout_gpu (the automatic choice) with a second engine forced onto
# $EXPERT_GEMM (default torch; skipped when the tests failed; all after the tests skipped when
# they timed out).
# Binaries come prebuilt from the dev machine (nvcc + the same LibTorch 2.11 cu130), stripped, in
# $MOE_BIN (default .carry/gpu-next/bin); logs in $OUT.
# Usage (repo root): scripts/device_moe.sh [bench_rollout_gpu args...]  (default 256 512 1024 64)
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/device-out}
mkdir -p "$out"
export PONDER_SOURCE_DIR=$root
bin=${MOE_BIN:-$root/.carry/gpu-next/bin}
step_tail=${STEP_TAIL:-30}
source "$root/scripts/device_common.sh"
use_device_libtorch
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/env.log"
step test timeout 120 "$bin/test_kernels" \
  --gtest_filter='GroupedGemm*:MoeOnGpu.*:EngineOnGpu.*:MoePermute*:MoeCombine*'
tests=$?
if [ "$tests" -eq 124 ]; then  # a kernel hung: the rest would hang too
  printf '%s\n' "${summary[@]}" | tee "$out/summary.log"
  exit 1
fi
step memcheck timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$bin/test_kernels" --gtest_filter='GroupedGemmCuda.*:MoePermuteCuda.*:MoeCombineCuda.*'
step moe timeout 150 "$bin/bench_moe" 256 512 1024 2048 4096 16384
[ $# -gt 0 ] || set -- 256 512 1024 64
if [ "$tests" -eq 0 ]; then
  step rollout timeout 260 env PONDER_BENCH_NO_HF=1 \
    PONDER_BENCH_EXPERT_GEMM="${EXPERT_GEMM:-torch}" "$bin/bench_rollout_gpu" "$@"
fi
printf '%s\n' "${summary[@]}" | tee "$out/summary.log"
