#!/usr/bin/env bash
# Builds and checks kernels/ on a GPU machine in one go: configure against the machine's LibTorch
# (dev headers the image lacks come from .carry/deps), build the kernel tests and benchmarks, run
# the tests, compute-sanitizer memcheck on them, then the benchmarks. Logs land in $OUT.
# Usage (repo root): scripts/device_kernels.sh [memcheck filter] [racecheck filter] [bench args...]
# PONDER_BENCH=NAME picks the benchmark bench/NAME/bench_NAME (default: kernels).
# .carry/deps (git-ignored, passed as `carry`): on a Debian 12 machine, `apt-get download
# libsqlite3-dev libseccomp-dev libpcre2-dev libgloo-dev pkgconf pkgconf-bin libpkgconf3`,
# `dpkg -x` each into .carry/deps, point usr/lib/x86_64-linux-gnu/lib{sqlite3,seccomp,pcre2-8}.so
# at /usr/lib/x86_64-linux-gnu/lib*.so.N (the image's runtime libraries) and set `prefix=` in
# the .pc files to ${pcfiledir}/../../..
set -uo pipefail
root=$(pwd)
out=${OUT:-$root/device-out}
mkdir -p "$out"
python=${PONDER_PYTHON:-/opt/torch/.venv/bin/python3}
deps=$root/.carry/deps/usr
build=$root/build-device
memcheck_filter=${1:-*}
racecheck_filter=${2:-SampleCuda.GreedyAndTopKOne*}
bench=${PONDER_BENCH:-kernels}
shift 2 || shift $#
step_tail=25
source "$root/scripts/device_common.sh"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  nvcc --version | tail -1; cmake --version | head -1; nproc; } >"$out/env.log" 2>&1
cat "$out/env.log"
pkg_config_args=()
if ! command -v pkg-config >/dev/null; then
  export LD_LIBRARY_PATH=$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  pkg_config_args=(-DPKG_CONFIG_EXECUTABLE="$deps/bin/pkgconf")
fi
step configure cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPONDER_DIST=OFF \
  -DPONDER_PYTHON="$python" -DCMAKE_PREFIX_PATH="$deps" -DPONDER_BOOST_FILESYSTEM=OFF "${pkg_config_args[@]}" &&
  step build ninja -C "$build" -j16 test_kernels "bench_$bench" &&
  # The image's libtorch exports std::filesystem symbols that win over libstdc++'s there (the
  # link-order fix in PonderDeps.cmake does not hold on that image): std::filesystem::remove_all
  # jumps to a null pointer. Preloading libstdc++ restores the right binding.
  export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6 &&
  { step test "$build/tests/kernels/test_kernels"
    step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 \
      "$build/tests/kernels/test_kernels" --gtest_filter="$memcheck_filter"
    step racecheck timeout 150 compute-sanitizer --tool racecheck --error-exitcode 1 \
      "$build/tests/kernels/test_kernels" --gtest_filter="$racecheck_filter"
    step bench "$build/bench/$bench/bench_$bench" "$@"; }
printf '%s\n' "${summary[@]}" | tee "$out/summary.log"
