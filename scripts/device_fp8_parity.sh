#!/usr/bin/env bash
# BF16 vs FP8 loss parity with ponder's own commands, in one device call: `ponder init-model` of
# the small MLA/MoE (bench/fp8/small_moe.json), then `ponder train bench/fp8/parity_recipe.json`
# (SFT warm-up on worked countdown solutions, then GRPO on countdown) with train.precision=bf16 and
# with fp8 from the same init and seed, side by side (one GPU each when there are two), `ponder
# report` overlaying both runs, then `bench_fp8 $BENCH_ARGS` (default `train 1 0`: step time of
# both precisions on the same model and batches; BENCH_ARGS= skips it). $OUT gets the logs, compare.html, metrics.csv (run,step,metric,value)
# and runs.tar.gz (both run.db files, for `ponder report` here).
# Prepare here (BIN git-ignored, passed as `carry`): stripped CUDA builds of ponder and bench_fp8
# in BIN/ (`strip -o BIN/ponder build/src/cli/ponder`), the minimind tokenizer in
# BIN/data/tokenizers/minimind. Usage (repo root): scripts/device_fp8_parity.sh BIN [--set F=V ...]
set -uo pipefail
bin=$(realpath "$1")
shift
out=${OUT:-/tmp/out}
mkdir -p "$out"
source "$(dirname "$0")/device_common.sh"
use_device_libtorch
export PONDER_DATA=$bin/data
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$bin/ponder" version | head -3
gpus=$(nvidia-smi --list-gpus | wc -l)
runs=/tmp/fp8-parity
rm -rf "$runs" && mkdir -p "$runs"
"$bin/ponder" init-model --config bench/fp8/small_moe.json --seed 1 --device cuda \
  --tokenizer "$PONDER_DATA/tokenizers/minimind" --out "$runs/small-moe" || exit 1
t0=$SECONDS
i=0
for precision in bf16 fp8; do
  CUDA_VISIBLE_DEVICES=$((i % gpus)) timeout "${TRAIN_TIMEOUT:-1800}" "$bin/ponder" train bench/fp8/parity_recipe.json \
    --set model.path="$runs/small-moe" --set run_dir="$runs/$precision" \
    --set train.precision=$precision "$@" >"$out/train-$precision.log" 2>&1 &
  i=$((i + 1))
done
wait
echo "both runs: $((SECONDS - t0)) s on $gpus GPU(s)"
for precision in bf16 fp8; do grep -E "^(sft:|held-out)" "$out/train-$precision.log" | tail -2; done
"$bin/ponder" report "$runs/bf16" "$runs/fp8" -o "$out/compare.html"
$py - "$runs" >"$out/metrics.csv" <<'PY'
import sqlite3, sys
print("run,step,metric,value")
for run in ("bf16", "fp8"):
    db = sqlite3.connect(f"{sys.argv[1]}/{run}/run.db")
    for step, name, value in db.execute("select step, name, value from metrics order by step, name"):
        print(f"{run},{step},{name},{value!r}")
PY
tar -czf "$out/runs.tar.gz" -C "$runs" bf16/run.db fp8/run.db
bench_args=${BENCH_ARGS-train 1 0}
[ -z "$bench_args" ] && exit 0
timeout "${BENCH_TIMEOUT:-600}" "$bin/bench_fp8" $bench_args >"$out/bench.log" 2>&1
grep -E "^(step time|fp8 grouped)" "$out/bench.log"
