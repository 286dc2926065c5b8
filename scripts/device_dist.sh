#!/usr/bin/env bash
# Data-parallel `ponder train` / `ponder sft` over NCCL on a GPU machine in one device call:
#  1. one NCCL rank (torchrun's variables, WORLD_SIZE=1) == the plain one-process GPU run (tiny
#     GRPO and SFT recipes: metrics, samples, weights and optimizer moments, compare_runs.py);
#  2. with 2+ GPUs: `--nproc 2` (rank r on cuda:r) == the plain one-GPU run, same recipes;
#  3. GRPO rollout+train step throughput on a DeepSeek-V2-Lite-shaped model (the preset's widths,
#     LAYERS layers, random BF16 init drawn on the GPU, bf16 linears): 1 GPU with PROMPTS prompts
#     per step, and with 2+ GPUs 2 ranks on 2 x PROMPTS (same per-GPU batch) and on PROMPTS (same
#     global batch); samples/s from time/step_s of steps 2.. in run.db.
# Prepare here (git-ignored .carry/dist, passed as `carry`): a stripped CUDA build of ponder in
# .carry/dist/bin/ponder, tokenizers/minimind and tokenizers/deepseek-v3 in .carry/dist/data, and
# this script with device_common.sh and compare_runs.py in .carry/dist.
# Usage (repo root): bash .carry/dist/device_dist.sh [LAYERS=4] [PROMPTS=16] [TP_TIMEOUT_S=240]
# (PROMPTS=0: the equivalence runs only.)
# $OUT gets env.log, summary.txt, throughput.txt and every step's log in logs.tar.gz (the device
# tool returns 8 files at most). On one H200, LAYERS=2 PROMPTS=16 took 96 s in all.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(pwd)/.carry/dist
results=${OUT:-/tmp/out}
out=/tmp/dist-logs  # step logs, packed into $results at the end
rm -rf "$out"
layers=${1:-4} prompts=${2:-16} tp_timeout=${3:-240}
mkdir -p "$out"
source "$here/device_common.sh"
use_device_libtorch
export PONDER_DATA=$root/data
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NCCL_DEBUG=VERSION  # one "NCCL version" line per process that opens a communicator
ponder=$root/bin/ponder
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/env.log"
"$ponder" version 2>&1 | tee -a "$out/env.log"
runs=/tmp/dist-runs
rm -rf "$runs" && mkdir -p "$runs"
one_rank=(env WORLD_SIZE=1 RANK=0 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29611)

# The CPU equivalence test's GRPO recipe (tests/dist/train_dist_test.cc), on the GPU.
grpo=(train --set train.device=cuda --set steps=4 --set checkpoint_every=2 --set eval_every=2
  --set sft.steps=40 --set sft.batch_size=8 --set data.eval_size=5 --set eval.n=2
  --set optim.eps=1e-6 --set rollout.prompts_per_step=3 --set rollout.n=4
  --set rollout.max_tokens=16 --set grpo.minibatches=2 --set grpo.dynamic_sampling=true
  --set 'rewards=[{"name": "math"}, {"name": "overlong", "options": {"max_tokens": 16, "buffer": 14}}]')
$py - "$runs" "$PONDER_DATA" <<'PY'
import json, sys
runs, data = sys.argv[1:]
with open(f"{runs}/chats.jsonl", "w") as f:
    for i in range(40):
        a, b = i * 7 % 50, i * 13 % 40
        f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                {"role": "assistant", "content": f"{a} + {b} = {a + b}."}]}) + "\n")
json.dump({"epochs": 1, "max_steps": 4, "batch_tokens": 192, "eval_every": 2,
           "checkpoint_every": 2, "train": {"device": "cuda"},
           "model": {"preset": "tiny-llama", "tokenizer": "tokenizers/minimind"},
           "data": {"train_file": f"{runs}/chats.jsonl", "eval_fraction": 0.2,
                    "chat_format": "chatml", "max_seq_len": 48},
           "optim": {"lr": 3e-3, "warmup_steps": 1, "schedule": "cosine", "eps": 1e-6}},
          open(f"{runs}/sft.json", "w"))
PY
# eps = 1e-6 in both recipes, as in tests/dist/train_dist_test.cc: with AdamW's default 1e-8, entries
# whose gradient is rounding noise move by up to ~lr/3 whenever the summation order changes (2 GPUs
# vs 1: 2.9e-5 on the SFT weights, with every metric equal to 1e-7), so 1e-5 would test Adam's
# normalisation of noise instead of the gradients.
sft=(sft "$runs/sft.json")

step grpo-plain "$ponder" "${grpo[@]}" --set run_dir=$runs/grpo-plain
step grpo-nccl1 "${one_rank[@]}" "$ponder" "${grpo[@]}" --set run_dir=$runs/grpo-nccl1
grep -c "NCCL version" "$out/grpo-nccl1.log"
step cmp-grpo-nccl1 $py "$here/compare_runs.py" $runs/grpo-plain $runs/grpo-nccl1
step sft-plain "$ponder" "${sft[@]}" --set run_dir=$runs/sft-plain
step sft-nccl1 "${one_rank[@]}" "$ponder" "${sft[@]}" --set run_dir=$runs/sft-nccl1
step cmp-sft-nccl1 $py "$here/compare_runs.py" $runs/sft-plain $runs/sft-nccl1
if [ "$gpus" -ge 2 ]; then
  step grpo-2gpu "$ponder" "${grpo[@]}" --nproc 2 --set run_dir=$runs/grpo-2gpu
  step cmp-grpo-2gpu $py "$here/compare_runs.py" $runs/grpo-plain $runs/grpo-2gpu
  step sft-2gpu "$ponder" "${sft[@]}" --nproc 2 --set run_dir=$runs/sft-2gpu
  step cmp-sft-2gpu $py "$here/compare_runs.py" $runs/sft-plain $runs/sft-2gpu
fi

# Throughput. Checkpoints (step 0 and the last) go to /dev/shm when it has room.
throughput_runs() {
  tp_dir=$runs
  [ "$(df --output=avail -B1G /dev/shm 2>/dev/null | tail -1)" -gt 100 ] 2>/dev/null && tp_dir=/dev/shm/dist-tp
  mkdir -p "$tp_dir"
  "$ponder" init-model --preset deepseek-v2-lite --config-only \
    --out $runs/v2l-preset > /dev/null
  $py -c "import json,sys; c=json.load(open(sys.argv[1])); c['num_hidden_layers']=int(sys.argv[2]); \
  json.dump(c, open(sys.argv[3], 'w'))" $runs/v2l-preset/config.json "$layers" $runs/v2l.json
  step v2l-init "$ponder" init-model --config $runs/v2l.json --dtype bfloat16 --device cuda \
    --tokenizer "$PONDER_DATA/tokenizers/deepseek-v3" --out $runs/v2l
  tp=(train --set model.path=$runs/v2l --set train.device=cuda --set train.precision=bf16
    --set sft.steps=0 --set steps=4 --set checkpoint_every=0 --set eval_every=1000
    --set data.eval_size=2 --set eval.n=1 --set rollout.n=8 --set rollout.max_tokens=128)
  tp_run() {  # NAME NPROC PROMPTS
    local nproc=()
    [ "$2" -gt 1 ] && nproc=(--nproc "$2")
    step "$1" timeout "$tp_timeout" "$ponder" "${tp[@]}" "${nproc[@]}" \
      --set rollout.prompts_per_step="$3" --set run_dir=$tp_dir/$1
    cp "$tp_dir/$1/run.db" "$out/$1.db" 2>/dev/null
    rm -rf "$tp_dir/$1/checkpoints"
  }
  tp_run tp-1gpu 1 "$prompts"
  if [ "$gpus" -ge 2 ]; then
    tp_run tp-2gpu-weak 2 $((2 * prompts))
    tp_run tp-2gpu-strong 2 "$prompts"
  fi
}
[ "$prompts" -gt 0 ] && throughput_runs
$py - "$out" "$layers" tp-1gpu=$((8 * prompts)) tp-2gpu-weak=$((16 * prompts)) \
  tp-2gpu-strong=$((8 * prompts)) <<'PY' | tee "$out/throughput.txt"
import os, sqlite3, sys
out, layers, *runs = sys.argv[1:]
base = None
for name, per_step in (r.split("=") for r in runs):
    path = f"{out}/{name}.db"
    if not os.path.exists(path):
        continue
    db = sqlite3.connect(path)
    m = lambda key: [v for s, v in db.execute(
        "select step, value from metrics where name = ? and step >= 2 order by step", (key,))]
    step_s = m("time/step_s")
    if not step_s:
        print(f"{name}: no step after the first finished")
        continue
    per_s = int(per_step) * len(step_s) / sum(step_s)
    base = base or per_s
    print(f"{name}: V2-Lite shape x {layers} layers, steps 2-{1 + len(step_s)}: "
          f"{per_step} samples/step, {sum(step_s) / len(step_s):.2f} s/step, {per_s:.1f} samples/s "
          f"({per_s / base:.2f}x tp-1gpu); rollout {sum(m('rollout/tokens_per_s')) / len(step_s):,.0f} "
          f"tokens/s")
PY
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
mkdir -p "$results"
cp "$out/env.log" "$out/summary.txt" "$out/throughput.txt" "$results/"
tar -czf "$results/logs.tar.gz" -C "$out" .
