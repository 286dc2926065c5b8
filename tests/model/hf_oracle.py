"""HF transformers oracle for the model tests (transformers 5.23, torch 2.11, CPU, float32).

usage: hf_oracle.py logits MODEL_DIR SEQS.json OUT.f32   logits of each sequence, concatenated
       hf_oracle.py greedy MODEL_DIR SEQS.json OUT.json  greedy continuation ids (N new tokens)
       hf_oracle.py roundtrip MODEL_DIR OUT_DIR          load, save_pretrained (HF's own writer)
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def load(path):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def main():
    mode, model_dir = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    model = load(model_dir)
    if mode == "roundtrip":
        model.save_pretrained(sys.argv[3])
        return
    seqs = json.load(open(sys.argv[3]))
    with torch.no_grad():
        if mode == "logits":
            out = [model(torch.tensor([ids])).logits[0] for ids in seqs["sequences"]]
            torch.cat(out).numpy().tofile(sys.argv[4])
        elif mode == "greedy":
            result = []
            for ids in seqs["sequences"]:
                gen = model.generate(torch.tensor([ids]), max_new_tokens=seqs["new_tokens"], do_sample=False,
                                     eos_token_id=None, pad_token_id=0)
                result.append(gen[0, len(ids):].tolist())
            json.dump(result, open(sys.argv[4], "w"))


if __name__ == "__main__":
    main()
