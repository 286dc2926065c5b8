#!/usr/bin/env python3
# Summarises scripts/device_fp8_parity.sh's metrics.csv (run,step,metric,value of the bf16 and fp8
# runs): the SFT warm-up's final-loss gap (mean of its last 10% of steps; the same batches in both
# runs, so the per-step gap is paired), GRPO reward and held-out accuracy by phase. With --csv
# PATH it also writes the per-step table committed under bench/fp8/ (step,metric,bf16,fp8).
# Usage: parity_summary.py metrics.csv [--csv out.csv]
import argparse
import csv
import statistics
from collections import defaultdict

KEPT = ("sft/loss", "train/loss", "reward/mean", "eval/accuracy", "train/grad_norm",
        "rollout/logprob_mismatch_mean", "response/length_tokens", "time/step_s")


def load(path):
    series = defaultdict(dict)  # (metric, run) -> {step: value}
    with open(path) as f:
        for row in csv.DictReader(f):
            series[row["metric"], row["run"]][int(row["step"])] = float(row["value"])
    return series


def sft_gap(series):
    bf16, fp8 = series["sft/loss", "bf16"], series["sft/loss", "fp8"]
    steps = sorted(set(bf16) & set(fp8))
    tail = steps[-max(1, len(steps) // 10):]
    mean_b = statistics.mean(bf16[s] for s in tail)
    mean_f = statistics.mean(fp8[s] for s in tail)
    gaps = [100 * (fp8[s] - bf16[s]) / bf16[s] for s in tail]
    print(f"SFT: {len(steps)} steps; final loss (mean of the last {len(tail)}): bf16 {mean_b:.4f} "
          f"fp8 {mean_f:.4f} gap {100 * (mean_f - mean_b) / mean_b:+.3f}%; per-step gap over "
          f"them {statistics.mean(gaps):+.3f}% (sd {statistics.stdev(gaps):.3f}%, "
          f"{sum(g > 0 for g in gaps)}/{len(gaps)} positive)")
    for k in range(1, 9):
        s = steps[len(steps) * k // 8 - 1]
        print(f"  SFT step {s + len(steps) + 1}: bf16 {bf16[s]:.4f} fp8 {fp8[s]:.4f}")


def by_phase(series, metric, phases=4):
    for run in ("bf16", "fp8"):
        values = series[metric, run]
        steps = sorted(s for s in values if s >= 1)
        if not steps:
            continue
        size = max(1, len(steps) // phases)
        means = [statistics.mean(values[s] for s in steps[i:i + size])
                 for i in range(0, len(steps), size)]
        print(f"  {metric} {run} by {size}-step phase: " + " ".join(f"{m:.4f}" for m in means))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("metrics")
    parser.add_argument("--csv")
    args = parser.parse_args()
    series = load(args.metrics)
    sft_gap(series)
    print("GRPO:")
    for metric in ("reward/mean", "rollout/logprob_mismatch_mean", "response/length_tokens",
                   "time/step_s"):
        by_phase(series, metric)
    for run in ("bf16", "fp8"):
        acc = series["eval/accuracy", run]
        print(f"  held-out accuracy {run}: " +
              " ".join(f"step {s}: {100 * v:.1f}%" for s, v in sorted(acc.items())))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["step", "metric", "bf16", "fp8"])
            for metric in KEPT:
                steps = sorted(set(series[metric, "bf16"]) | set(series[metric, "fp8"]))
                for s in steps:
                    out.writerow([s, metric] + [f"{series[metric, r][s]:.6g}"
                                                if s in series[metric, r] else ""
                                                for r in ("bf16", "fp8")])


if __name__ == "__main__":
    main()
