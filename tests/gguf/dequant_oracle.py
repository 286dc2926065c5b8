"""Oracle for the GGUF test: dequantises named tensors with the `gguf` package (llama.cpp's
reference Python reader) and prints, per tensor, its shape, type, sum and first/last values."""
import json
import sys

import gguf
import numpy as np

reader = gguf.GGUFReader(sys.argv[1])
wanted = set(sys.argv[2:])
out = {}
for t in reader.tensors:
    if t.name not in wanted:
        continue
    values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
    out[t.name] = {"type": t.tensor_type.name, "shape": [int(d) for d in reversed(t.shape)],
                   "sum": float(values.sum()), "head": values[:64].tolist(),
                   "tail": values[-64:].tolist()}
print(json.dumps(out))
