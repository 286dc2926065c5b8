#!/usr/bin/env bash
# MLA decode on the GPU machine in one device call: the kernel tests, compute-sanitizer memcheck
# on MlaDecode*, and `bench_kernels mla_decode`, then (if present) a previous build's
# bench_kernels_base as the same-run baseline. Binaries come prebuilt from the dev machine (nvcc +
# the same LibTorch 2.11 cu130), stripped, in $MLA_BIN (default .carry/gpu9/bin); logs in $OUT.
# Usage (repo root): scripts/device_mla.sh
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/device-out}
mkdir -p "$out"
export PONDER_SOURCE_DIR=$root
bin=${MLA_BIN:-$root/.carry/gpu9/bin}
step_tail=${STEP_TAIL:-30}
source "$root/scripts/device_common.sh"
use_device_libtorch
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/env.log"
step test timeout 70 "$bin/test_kernels" --gtest_filter='*:-SampleCuda.Frequencies*'
step memcheck timeout 60 compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$bin/test_kernels" --gtest_filter='MlaDecode*'
step bench timeout 60 "$bin/bench_kernels" mla_decode
if [ -x "$bin/bench_kernels_base" ]; then
  step bench_base timeout 40 "$bin/bench_kernels_base" mla_decode
fi
printf '%s\n' "${summary[@]}" | tee "$out/summary.log"
