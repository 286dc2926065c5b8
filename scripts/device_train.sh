#!/usr/bin/env bash
# `ponder train` on a GPU machine in one device call: the quickstart recipe on CUDA with fp32 and
# bf16 linears (wall time, held-out accuracy before/after GRPO), then a 4-step smoke of every
# train.* option (bf16 + micro-batches + activation checkpointing + balance loss, fp8) and of
# one-step off-policy generation against on-policy, on the quickstart model and on a 2-layer
# DeepSeek-V2-Lite-shaped one (random BF16 init; needs tokenizers/deepseek-v3 in .carry/train/data).
# `scripts/device_train.sh off-policy` runs only that last comparison.
# Prepare here (git-ignored .carry/train, passed as `carry`): a stripped CUDA build of ponder in
# .carry/train/bin/ponder (`strip -o .carry/train/bin/ponder build/src/cli/ponder`) and the minimind
# tokenizer in .carry/train/data/tokenizers/minimind. Usage (repo root): scripts/device_train.sh
set -uo pipefail
root=$(pwd)/.carry/train
out=${OUT:-/tmp/out}
mkdir -p "$out"
source "$(dirname "$0")/device_common.sh"
use_device_libtorch
export PONDER_DATA=$root/data
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/env.log"
"$root/bin/ponder" version 2>&1 | tee -a "$out/env.log"
mode=${1:-all}
quickstart() {
  local t0=$SECONDS
  "$root/bin/ponder" train --set run_dir=/tmp/qs-$1 --set train.device=cuda \
    --set train.precision=$1 > "$out/quickstart-$1.log" 2>&1
  echo "quickstart $1 rc=$? wall $((SECONDS - t0)) s"
  tail -n 2 "$out/quickstart-$1.log"
}
common="--set steps=4 --set sft.steps=60 --set sft.batch_size=16 --set data.eval_size=16 --set eval.n=2 --set eval_every=4 --set checkpoint_every=4"
run() {
  local name=$1; shift
  local t0=$SECONDS
  "$root/bin/ponder" train --set run_dir=/tmp/runs/$name --set train.device=cuda $common "$@" > "$out/$name.log" 2>&1
  echo "$name rc=$? $((SECONDS - t0))s"; tail -n 3 "$out/$name.log"
  $py - /tmp/runs/$name/run.db > "$out/$name.metrics" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for step, name, value in db.execute("select step, name, value from metrics where step >= 0 order by step, name"):
    print(step, name, value)
PY
  grep -E "^(1|4) (train/loss|reward/mean|train/grad_norm|moe/sequence|eval/accuracy)" "$out/$name.metrics"
}
if [ "$mode" = all ]; then
  quickstart fp32
  quickstart bf16
  run fp32 --set train.precision=fp32
  run bf16 --set train.precision=bf16 --set train.micro_batch_size=5 --set train.activation_checkpointing=true --set optim.balance_loss_coef=0.01
  run fp8 --set train.precision=fp8
fi
run on-policy --set train.precision=bf16 --set steps=8 --set eval_every=8 --set checkpoint_every=8
run off-policy --set train.precision=bf16 --set steps=8 --set eval_every=8 --set checkpoint_every=8 --set rollout.off_policy_steps=1
grep -E "^[0-9]+ (time/step_s|time/rollout_wait_s|rollout/policy_lag_steps|rollout/logprob_mismatch_mean)" "$out/on-policy.metrics" "$out/off-policy.metrics"
make_v2lite_2layers "$root/bin/ponder"
v2l="--set model.path=/tmp/v2l --set sft.steps=0 --set steps=6 --set checkpoint_every=0 --set eval_every=1000 --set data.eval_size=2 --set eval.n=1 --set rollout.prompts_per_step=16 --set rollout.n=8 --set rollout.max_tokens=128"
run v2l-on-policy --set train.precision=bf16 $v2l
run v2l-off-policy --set train.precision=bf16 $v2l --set rollout.off_policy_steps=1
grep -E "^[0-9]+ (time/step_s|time/rollout_wait_s|rollout/tokens_per_s)" "$out/v2l-on-policy.metrics" "$out/v2l-off-policy.metrics"
