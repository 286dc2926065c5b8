"""HF `tokenizers` baseline for bench_tokenizer: encodes the GSM8K, MATH and HumanEval texts of the
tokenizer test (tests/tokenizer/hf_tokenizer_oracle.py, without its hand-picked extras) one string
at a time (single-threaded), and with encode_batch serial and parallel; repeats each mode for at
least MIN_SECONDS.

usage: hf_encode.py TOKENIZER_DIR DATA_ROOT OUT.json MIN_SECONDS
OUT.json: {"texts": [...], "ids": [[...]], "modes": [{"mode": NAME, "seconds": S, "passes": P}], ...}
"""
import json
import os
import sys
import time

import tokenizers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "tokenizer"))
import hf_tokenizer_oracle  # noqa: E402


def timed(fn, min_seconds):
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < min_seconds:
        fn()
        passes += 1
    return {"seconds": time.perf_counter() - start, "passes": passes}


def batch(tok, texts, parallel):
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    return lambda: tok.encode_batch(texts, add_special_tokens=False)


def main():
    tok_dir, data_root, out_path, min_seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    tok = tokenizers.Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    texts = hf_tokenizer_oracle.texts(data_root)[:-len(hf_tokenizer_oracle.EXTRA)]
    ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]  # also warms the caches
    runs = [("one string at a time (1 thread)", lambda: [tok.encode(t, add_special_tokens=False) for t in texts]),
            ("encode_batch, TOKENIZERS_PARALLELISM=false", batch(tok, texts, False)),
            (f"encode_batch, parallel ({os.cpu_count()} cores)", batch(tok, texts, True))]
    modes = [dict(mode=name, **timed(fn, min_seconds)) for name, fn in runs]
    json.dump({"texts": texts, "ids": ids, "modes": modes, "tokenizers": tokenizers.__version__},
              open(out_path, "w"))


if __name__ == "__main__":
    main()
