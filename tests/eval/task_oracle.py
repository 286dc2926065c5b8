# Oracle for the built-in eval tasks: reads each jsonl with plain Python and prints, per task,
# every item's id, gold answer (or reference fields) and question text, one JSON object per task.
import json
import re
import sys

root = sys.argv[1]


def rows(path):
    with open(f"{root}/{path}", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def last_boxed(text):
    starts = [m.end() for m in re.finditer(r"\\boxed\s*\{", text)]
    if not starts:
        return None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def math(path, id_key, question_key, gold):
    return [{"id": str(r[id_key]), "question": r[question_key], "answer": gold(r)}
            for r in rows(path)]


tasks = {
    "gsm8k": math("math_eval/gsm8k.jsonl", "idx", "question",
                  lambda r: r["answer"].split("####")[-1]),
    "math500": math("math_eval/math500.jsonl", "unique_id", "problem", lambda r: r["answer"]),
    "aime24": math("math_eval/aime24.jsonl", "id", "problem", lambda r: str(r["answer"])),
    "amc23": math("math_eval/amc23.jsonl", "id", "problem", lambda r: str(r["answer"])),
    "minerva_math": math("math_eval/minerva_math.jsonl", "idx", "problem",
                         lambda r: last_boxed(r["solution"])),
    "olympiadbench": math("math_eval/olympiadbench.jsonl", "id", "question",
                          lambda r: ", ".join(r["final_answer"])),
    "humaneval": [{"id": r["task_id"], "question": r["prompt"],
                   "reference": {k: r[k] for k in ("prompt", "test", "entry_point")}}
                  for r in rows("humaneval/HumanEval.jsonl")],
    "mbpp": [{"id": str(r["task_id"]), "question": r["prompt"],
              "reference": {k: r[k] for k in ("test_list", "test_imports")}}
             for r in rows("mbpp/sanitized-mbpp.jsonl")],
}
print(json.dumps(tasks))
