# Sourced by the scripts/device_*.sh runners: `step NAME command...` runs a command with its output
# in $out/NAME.log, prints the log's last $step_tail lines and records status and seconds in
# `summary` (printed by the runner at the end).
summary=()
step_tail=${step_tail:-25}
step() {
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-10s rc=%-3s %4ss' "$name" "$rc" $((SECONDS - t0)))")
  tail -n "$step_tail" "$out/$name.log"
  return $rc
}

# Puts the GPU machine's LibTorch and its CUDA libraries in front of binaries built on the dev
# machine; sets $py (= $PONDER_PYTHON, the image's torch venv) and $torch_lib.
use_device_libtorch() {
  export PONDER_PYTHON=${PONDER_PYTHON:-/opt/torch/.venv/bin/python3}
  py=$PONDER_PYTHON
  torch_lib=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib
  export LD_LIBRARY_PATH=$torch_lib:$(printf '%s:' "$torch_lib"/../../nvidia/*/lib)${LD_LIBRARY_PATH:-}
  export LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libstdc++.so.6  # the image's libtorch shadows it
}
