#!/usr/bin/env bash
# GRPO rollouts in BF16 on CUDA (rollout.dtype auto) vs from the FP32 policy (rollout.dtype=fp32)
# in one device call, on bench/RESULTS.md's "One-step off-policy generation" config: DeepSeek-V2-
# Lite widths x 2 layers (random BF16 init), 16 prompts x 8 x 128 tokens, 6 steps,
# train.precision=bf16; each run's log says which MLA decode attention ran. Default mode: fp32,
# auto, then the quickstart tiny-mla for 3 steps with auto; `off-policy`: auto with
# rollout.off_policy_steps=1, then auto again. Prepare here (git-ignored .carry/trainroll, passed
# as `carry`): a stripped CUDA build in .carry/trainroll/bin/ponder and the tokenizers
# (deepseek-v3, minimind) in .carry/trainroll/data/tokenizers. Usage (repo root):
# scripts/device_rollout_dtype.sh [off-policy]
set -uo pipefail
root=$(pwd); out=${OUT:-$root/device-out}; mkdir -p "$out"
here=$root/.carry/trainroll
mode=${1:-on-policy}
source "$root/scripts/device_common.sh"
use_device_libtorch
export PONDER_DATA=$here/data
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/env.log"
"$here/bin/ponder" version 2>&1 | tee -a "$out/env.log"
metrics() {
  $py - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = list(db.execute("select step, name, value from metrics where step >= 0 order by step"))
for step, name, value in rows:
    print(step, name, value)
def mean(name, lo=2):
    v = [value for step, n, value in rows if n == name and step >= lo]
    return sum(v) / len(v) if v else float('nan')
print("SUMMARY s/step %.3f rollout tok/s %.0f gap %.4f gap_max %.3f reward %.3f" % (
    mean("time/step_s"), mean("rollout/tokens_per_s"), mean("rollout/logprob_mismatch_mean", 1),
    mean("rollout/logprob_mismatch_max", 1), mean("reward/mean", 1)))
PY
}
run() {
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  timeout "$cap" "$here/bin/ponder" train --set run_dir=/tmp/runs/$name --set train.device=cuda "$@" \
    > "$out/$name.log" 2>&1
  echo "$name rc=$? $((SECONDS - t0)) s"
  grep -E "KV cache|MLA decode attention|error" "$out/$name.log" | head -5
  metrics /tmp/runs/$name/run.db > "$out/$name.metrics" 2>&1
  tail -n 1 "$out/$name.metrics"
}
make_v2lite_2layers "$here/bin/ponder"
v2l="--set model.path=/tmp/v2l --set sft.steps=0 --set steps=6 --set checkpoint_every=0 --set eval_every=1000 --set data.eval_size=2 --set eval.n=1 --set rollout.prompts_per_step=16 --set rollout.n=8 --set rollout.max_tokens=128 --set train.precision=bf16"
if [ "$mode" = off-policy ]; then
  run v2l-auto-off 60 $v2l --set rollout.off_policy_steps=1
  run v2l-auto-2 45 $v2l
  exit 0
fi
run v2l-fp32 70 $v2l --set rollout.dtype=fp32
run v2l-auto 60 $v2l
run tiny-auto 40 --set steps=3 --set sft.steps=20 --set eval_every=3 --set checkpoint_every=3 \
  --set data.eval_size=8 --set eval.n=1
nvidia-smi --query-gpu=memory.used --format=csv >> "$out/env.log"
