"""Oracle for GGUF conversion: transformers' own GGUF import (transformers 5.23 + gguf 0.19) is
compared with ponder's tokenizer.json / config.json and raw float32 q/k/v tensor dumps.

usage: convert_oracle.py GGUF_FILE PONDER_DIR TEXTS_JSONL
Prints JSON: mismatching tokenizations, config differences, max abs tensor differences."""
import json
import os
import sys

import numpy as np
import tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

gguf_path, ponder_dir, texts_path = sys.argv[1:4]
folder, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
hf_tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
# transformers' GGUF import ignores tokenizer.ggml.pre; llama.cpp's "smollm" pre-tokenizer splits
# every digit (\p{N}) before the GPT-2 regex, as SmolLM2's original tokenizer.json does.
if hf_tok.backend_tokenizer is not None and "smollm" in open(gguf_path, "rb").read(1 << 20).decode("latin-1"):
    hf_tok.backend_tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Sequence([
        tokenizers.pre_tokenizers.Digits(individual_digits=True),
        tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
ours = tokenizers.Tokenizer.from_file(os.path.join(ponder_dir, "tokenizer.json"))
texts = [json.loads(line)["question"] for line in open(texts_path)][:400]
texts += ["<|im_start|>user\nWhat is 12*7?<|im_end|>\n", "  spaces\tand\n\nnewlines 12345 ü 日本"]
bad = [t for t in texts if hf_tok(t, add_special_tokens=False)["input_ids"]
       != ours.encode(t, add_special_tokens=False).ids]

hf_cfg = AutoConfig.from_pretrained(folder, gguf_file=name).to_dict()
our_cfg = json.load(open(os.path.join(ponder_dir, "config.json")))
keys = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "rms_norm_eps", "rope_theta", "vocab_size", "tie_word_embeddings"]
hf_cfg["rope_theta"] = hf_cfg.get("rope_parameters", {}).get("rope_theta", hf_cfg.get("rope_theta"))
config_diff = {k: [hf_cfg.get(k), our_cfg.get(k)] for k in keys if hf_cfg.get(k) != our_cfg.get(k)}

state = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).state_dict()
tensor_diff = {}
for n in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
          "model.layers.0.self_attn.v_proj.weight"]:
    ref = state[n].float().numpy()
    got = np.fromfile(os.path.join(ponder_dir, n + ".f32"), dtype=np.float32).reshape(ref.shape)
    tensor_diff[n] = float(np.abs(ref - got).max())
print(json.dumps({"texts": len(texts), "mismatches": bad[:5], "mismatch_count": len(bad),
                  "config_diff": config_diff, "tensor_max_abs_diff": tensor_diff}))
