"""HF transformers oracle for ponder's reward models (transformers 5.23, torch 2.11, CPU, float32).

usage: hf_rm_oracle.py ids MODEL_DIR SEQS.json OUT.json
         scores of token sequences, right-padded into one batch with the config's pad_token_id
         (attention_mask 0 on the padding), scored by AutoModelForSequenceClassification
       hf_rm_oracle.py pairs MODEL_DIR PAIRS.json OUT.json
         [{"prompt", "response"}] rendered as a ChatML user + assistant turn by
         apply_chat_template (trailing whitespace stripped), tokenized by the directory's HF
         tokenizer, scored one at a time
"""
import json
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
          " + '<|im_end|>' + '\n'}}{% endfor %}")


def main():
    mode, model_dir, inputs, out = sys.argv[1:5]
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    assert model.config.num_labels == 1
    data = json.load(open(inputs))
    with torch.no_grad():
        if mode == "ids":
            pad = model.config.pad_token_id
            width = max(len(s) for s in data)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in data])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in data])
            scores = model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
        else:
            tok = AutoTokenizer.from_pretrained(model_dir)
            scores = []
            for p in data:
                text = tok.apply_chat_template(
                    [{"role": "user", "content": p["prompt"]},
                     {"role": "assistant", "content": p["response"]}],
                    tokenize=False, chat_template=CHATML).rstrip(" \t\n")
                ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                scores.append(model(input_ids=ids).logits[0, 0].item())
    json.dump(scores, open(out, "w"))


if __name__ == "__main__":
    main()
