"""HF transformers `generate` baseline for bench_rollout: greedy decoding of the same prompts with
the same max_new_tokens (EOS ignored), timed per workload (the run with the best wall time of REPS after one warm-up, with its process
CPU time, which is steadier on a shared machine).

usage: hf_generate.py MODEL_DIR WORKLOADS.json OUT.json THREADS REPS [DEVICE [DTYPE]]
DEVICE: cpu (default) or cuda; DTYPE: float32 (default) or bfloat16. On cuda the model is loaded
straight onto the GPU with HF's grouped_mm experts where this transformers version has them.
WORKLOADS.json: [{"prompts": [[ids...], ...], "new_tokens": N}, ...]; all prompts of a workload
have one length, so the batch needs no padding.
OUT.json: {"workloads": [{"seconds": S, "cpu_seconds": C, "ids": [[new ids...], ...]}], "versions": {...}}
"""
import json
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def run(model, prompts, new_tokens):
    ids = torch.tensor(prompts, device=model.device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[:, ids.shape[1]:].tolist()


def load(model_dir, device, dtype):
    if device == "cpu":
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, device_map=device,
                                                     experts_implementation="grouped_mm")
    except (TypeError, ValueError) as e:
        print(f"hf_generate: grouped_mm experts unavailable ({e}); default experts",
              file=sys.stderr)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, device_map=device)
    return model.eval()


def main():
    model_dir, workloads_path, out_path = sys.argv[1:4]
    threads, reps = int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    dtype = getattr(torch, sys.argv[7] if len(sys.argv) > 7 else "float32")
    model = load(model_dir, device, dtype)
    results = []
    with torch.inference_mode():
        run(model, [[3] * 8], 4)  # warm-up
        for w in json.load(open(workloads_path)):
            best = {"seconds": float("inf")}
            for _ in range(reps):
                start, cpu_start = time.perf_counter(), time.process_time()
                ids = run(model, w["prompts"], w["new_tokens"])
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
                if seconds < best["seconds"]:
                    best = {"seconds": seconds, "cpu_seconds": cpu_seconds, "ids": ids}
            results.append(best)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "attn_implementation": model.config._attn_implementation,
                "experts_implementation": getattr(model.config, "_experts_implementation", None)}
    json.dump({"workloads": results, "versions": versions}, open(out_path, "w"))


if __name__ == "__main__":
    main()
