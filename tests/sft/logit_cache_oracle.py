"""Independent check of a ponder teacher logit cache (transformers 5 / torch 2.11, CPU, float32).

Parses the cache with numpy from the layout documented in src/train/logit_cache.h, runs the
teacher checkpoint with transformers AutoModelForCausalLM on the first `count` cached sequences and
prints, as JSON, how far the cached top-k ids, log-probs and tail masses are from the teacher's."""
import json
import struct
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

path, teacher_dir, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = open(path, "rb").read()
assert raw[:8] == b"PNDLOGC1"
(length,) = struct.unpack("<Q", raw[8:16])
header = json.loads(raw[16:16 + length])
S, N, P, K = header["sequences"], header["tokens"], header["positions"], header["k"]
at = 16 + length


def take(dtype, n):
    global at
    a = np.frombuffer(raw, dtype=dtype, count=n, offset=at)
    at += a.nbytes
    return a


offsets = take("<i8", S + 1)
prompt_lengths = take("<i8", S)
tokens = take("<i4", N)
ids = take("<i4", P * K).reshape(P, K)
logprobs = take("<f2" if header["logprob_dtype"] == "float16" else "<f4", P * K).reshape(P, K)
tail = take("<f4", P)
assert at == len(raw)

model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
row, worst = 0, {"ids_mismatch": 0, "logprob": 0.0, "tail": 0.0, "checked_positions": 0}
for s in range(S):
    seq = tokens[offsets[s]:offsets[s + 1]]
    n_resp = len(seq) - prompt_lengths[s]
    if s < count:
        with torch.no_grad():
            logits = model(torch.tensor(seq[None].astype(np.int64))).logits[0]
        lp = logits.log_softmax(-1)[prompt_lengths[s] - 1:len(seq) - 1]
        top_v, top_i = lp.topk(K, -1)
        want_tail = (1 - top_v.double().exp().sum(-1)).clamp(0, 1)
        got = slice(row, row + n_resp)
        worst["ids_mismatch"] += int((top_i.numpy() != ids[got]).sum())
        worst["logprob"] = max(worst["logprob"], float(np.abs(top_v.numpy() - logprobs[got].astype(np.float32)).max()))
        worst["tail"] = max(worst["tail"], float(np.abs(want_tail.numpy() - tail[got]).max()))
        worst["checked_positions"] += int(n_resp)
    row += n_resp
assert row == P
print(json.dumps(worst))
