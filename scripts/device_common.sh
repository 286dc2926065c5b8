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

# Writes a random-init DeepSeek-V2-Lite-shaped model cut to 2 layers (BF16, drawn on the GPU) to
# /tmp/v2l with the ponder binary $1 and $PONDER_DATA's deepseek-v3 tokenizer; log in $out.
make_v2lite_2layers() {
  "$1" init-model --preset deepseek-v2-lite --config-only --out /tmp/v2l-preset > /dev/null
  "$py" -c "import json; c=json.load(open('/tmp/v2l-preset/config.json')); \
c['num_hidden_layers']=2; json.dump(c, open('/tmp/v2l.json', 'w'))"
  "$1" init-model --config /tmp/v2l.json --dtype bfloat16 --device cuda \
    --tokenizer "$PONDER_DATA/tokenizers/deepseek-v3" --out /tmp/v2l > "$out/v2l-init.log" 2>&1
}
