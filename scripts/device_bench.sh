#!/usr/bin/env bash
# GPU tests and benchmarks of the rollout path in one device call: the MoE/engine GPU tests, the
# MoE layer benchmark and the end-to-end rollout benchmark (ponder vs HF generate), logs in $OUT.
# Binaries come prebuilt from the dev machine (nvcc + the same LibTorch 2.11 cu130) in
# .carry/bin, run against the GPU machine's LibTorch; without them they are built here as
# scripts/device_kernels.sh does.
# Usage (repo root): scripts/device_bench.sh [bench_rollout_gpu args...]
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/device-out}
mkdir -p "$out"
bin=$root/.carry/bin
export PONDER_SOURCE_DIR=$root
step_tail=60
source "$root/scripts/device_common.sh"
use_device_libtorch
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
if ! "$bin/test_kernels" --gtest_list_tests >/dev/null 2>"$out/prebuilt.log"; then
  echo "prebuilt binaries do not run here ($(head -c 300 "$out/prebuilt.log")); building"
  deps=$root/.carry/deps/usr
  export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH
  step configure cmake -S "$root" -B "$root/build-device" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPONDER_DIST=OFF -DPONDER_PYTHON="$PONDER_PYTHON" \
    -DCMAKE_PREFIX_PATH="$deps" -DPONDER_BOOST_FILESYSTEM=OFF \
    -DPKG_CONFIG_EXECUTABLE="$deps/bin/pkgconf" &&
    step build ninja -C "$root/build-device" -j16 test_kernels bench_moe bench_rollout_gpu || exit 1
  mkdir -p "$bin"
  cp "$root"/build-device/{tests/kernels/test_kernels,bench/moe/bench_moe} "$bin"/
  cp "$root"/build-device/bench/rollout/bench_rollout_gpu "$bin"/
fi
step test "$bin/test_kernels" --gtest_filter='*:-SampleCuda.Frequencies*'
step moe "$bin/bench_moe"
step rollout "$bin/bench_rollout_gpu" "$@"
printf '%s\n' "${summary[@]}" | tee "$out/summary.log"
