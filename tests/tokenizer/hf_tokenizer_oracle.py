"""Oracle for the tokenizer tests: builds the test strings (from ../shared/data plus hand-picked
Unicode, emoji, CJK, whitespace, number and code cases) and encodes them with HF `tokenizers`
(0.23.3, add_special_tokens=False). Also renders chat templates with transformers.

usage: hf_tokenizer_oracle.py encode TOKENIZER_DIR DATA_ROOT OUT.json
       hf_tokenizer_oracle.py chat TOKENIZER_DIR OUT.json
"""
import json
import os
import sys

import tokenizers

EXTRA = [
    "", " ", "  leading and trailing  ", "tabs\tand\nnewlines\r\n\r\nend", "\n\n\n", "a  b   c    d",
    "12345678901234567890", "3.14159 -2.5e-10 1,000,000 0x1F", "€100 £20 ¥3000 ₹45",
    "日本語のテキストと漢字", "中文测试：你好，世界！", "한국어 문장입니다", "Ελληνικά και русский текст",
    "emoji 😀🎉👍🏽 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵", "math: ∫₀¹ x² dx = ⅓, ∀ε>0 ∃δ", "naïve café résumé coöperate",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))", "if (a && b || !c) { x += 1; }",
    "SHOUTING CamelCase snake_case kebab-case", "don't won't it's we're they've I'm you'll he'd",
    "\\frac{1}{2} + \\sqrt{x^2+1} = \\boxed{42}", "<think>reasoning</think><answer>7</answer>",
    "zero\u200bwidth\u00a0nbsp\u2028line sep", "\U0001F600\U0001F601 astral plane \U00020000",
]


def texts(data_root):
    out = []
    with open(os.path.join(data_root, "gsm8k/test.jsonl")) as f:
        for i, line in enumerate(f):
            if i >= 1000:
                break
            r = json.loads(line)
            out += [r["question"], r["answer"]]
    with open(os.path.join(data_root, "math/test.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            out += [r["problem"], r["solution"]]
    with open(os.path.join(data_root, "humaneval/HumanEval.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            out += [r["prompt"], r["canonical_solution"]]
    return out + EXTRA


def main():
    mode, tok_dir = sys.argv[1], sys.argv[2]
    if mode == "encode":
        tok = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
        cases = texts(sys.argv[3])
        specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special][:3]
        cases += [f"before{s}after {s}{s} x" for s in specials]
        ids = [tok.encode(t, add_special_tokens=False).ids for t in cases]
        json.dump({"texts": cases, "ids": ids, "tokenizers": tokenizers.__version__}, open(sys.argv[3 + 1], "w"))
    elif mode == "chat":
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tok_dir)
        conversations = [
            [{"role": "user", "content": "What is 2+2?"}],
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
             {"role": "user", "content": "Q2"}],
        ]
        rendered = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        json.dump({"conversations": conversations, "rendered": rendered, "bos": tok.bos_token or ""},
                  open(sys.argv[3], "w"))


if __name__ == "__main__":
    main()
