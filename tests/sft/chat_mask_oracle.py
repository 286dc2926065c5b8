"""Assistant-token mask oracle for ponder's SFT tokenization (transformers 5.23, tokenizers).

usage: chat_mask_oracle.py TOKENIZER_DIR FORMAT CHATS.json OUT.json
FORMAT: "qwen3" renders with the tokenizer's own Jinja chat_template (minimind: Qwen3 style);
"chatml" with the standard ChatML template below. For every conversation, HF's
apply_chat_template renders each assistant turn's prompt (add_generation_prompt=True) and the
conversation up to that turn; the turn's trained text starts where the rendered generation prompt
ends (or, if the turn diverges from it, after the last whitespace before they differ) and ends at
the last non-whitespace character; segments are tokenized by the HF tokenizer. Writes
[{"ids": [...], "trained": [0/1...]}, ...].
"""
import json
import sys

from transformers import AutoTokenizer

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
          " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")


def start_of_turn(prompt, full):
    if full.startswith(prompt):
        return len(prompt)
    common = 0
    while common < min(len(prompt), len(full)) and prompt[common] == full[common]:
        common += 1
    cut = max(full.rfind(c, 0, common) for c in " \t\n")
    return cut + 1


def main():
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    template = CHATML if sys.argv[2] == "chatml" else None
    chats = json.load(open(sys.argv[3]))
    out = []
    for messages in chats:
        ids, trained, done = [], [], ""

        def render(msgs, gen):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen,
                                           chat_template=template)

        def add(text, flag):
            piece = tok(text, add_special_tokens=False)["input_ids"]
            ids.extend(piece)
            trained.extend([flag] * len(piece))

        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            full = render(messages[:i + 1], False)
            start = max(start_of_turn(render(messages[:i], True), full), len(done))
            end = len(full.rstrip(" \t\n"))
            assert full.startswith(done)
            add(full[len(done):start], 0)
            add(full[start:end], 1)
            done = full[:end]
        out.append({"ids": ids, "trained": trained})
    json.dump(out, open(sys.argv[4], "w"))


if __name__ == "__main__":
    main()
