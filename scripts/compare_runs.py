#!/usr/bin/env python3
# Compares two ponder run directories made from the same recipe (e.g. 1 GPU vs 2 GPU ranks): the
# metrics (wall-clock timings left out), the logged samples, and the weights and optimizer moments
# of the last checkpoint. Prints the largest differences; exits 1 when one exceeds --tol.
# Usage: compare_runs.py RUN_A RUN_B [--tol 1e-5]   (needs torch + safetensors)
import argparse
import pathlib
import sqlite3
import sys

from safetensors.torch import load_file


def is_timing(name):
    return name.startswith("time/") or name.endswith("tokens_per_s") or name.endswith("seconds")


def metrics(run):
    db = sqlite3.connect(run / "run.db")
    return {f"{n}@{s}": v for s, n, v in db.execute("select step, name, value from metrics")
            if not is_timing(n)}


def samples(run):
    db = sqlite3.connect(run / "run.db")
    return sorted(db.execute("select step, split, grp, completion, reward from rollouts"))


def last_checkpoint(run):
    steps = sorted((run / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    return steps[-1]


def max_difference(a, b):
    ta, tb = load_file(str(a)), load_file(str(b))
    if ta.keys() != tb.keys():
        raise SystemExit(f"{a} and {b} hold different tensors")
    return max((ta[k].double() - tb[k].double()).abs().max().item()
               for k in ta if not k.startswith("rng."))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a", type=pathlib.Path)
    parser.add_argument("b", type=pathlib.Path)
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    ma, mb = metrics(args.a), metrics(args.b)
    if ma.keys() != mb.keys():
        raise SystemExit(f"different metrics: {sorted(ma.keys() ^ mb.keys())[:10]}")
    metric_gap = max(abs(ma[k] - mb[k]) / max(1.0, abs(ma[k])) for k in ma)
    sa, sb = samples(args.a), samples(args.b)
    same = sum(x == y for x, y in zip(sa, sb))
    ca, cb = last_checkpoint(args.a), last_checkpoint(args.b)
    weights = max_difference(ca / "model.safetensors", cb / "model.safetensors")
    moments = max_difference(ca / "optimizer.safetensors", cb / "optimizer.safetensors")
    start = next((p for p in (args.a / "checkpoints" / "step-0" / "model.safetensors",
                              args.a / "init" / "model.safetensors") if p.exists()), None)
    moved = max_difference(start, ca / "model.safetensors") if start else float("nan")
    print(f"{args.a.name} vs {args.b.name} at {ca.name}: metrics max rel diff {metric_gap:.3g} "
          f"({len(ma)} values); samples equal {same}/{len(sa)} (vs {len(sb)}); weights max diff "
          f"{weights:.3g}; optimizer moments {moments:.3g}; training moved weights by {moved:.3g}")
    ok = len(sa) == len(sb) and same == len(sa) and max(metric_gap, weights, moments) <= args.tol
    print("PASS" if ok else f"FAIL (tolerance {args.tol})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
