"""Builds (gold, prediction) pairs from the MATH and GSM8K answers and records math-verify's verdict.

Usage: build_agreement_pairs.py DATA_ROOT OUT.jsonl [--golds N]

Every gold answer yields an equivalent rewrite (0.5 / 1/2 / \\frac{1}{2} / 50\\%, thousands
separators, x=..., \\dfrac, reordered sets, pmatrix/bmatrix, sympy's own rendering of the
expression...), a near miss (off by one, swapped tuple, flipped interval end, changed
coefficient...) and a wrong answer (another problem's gold). Predictions are wrapped the way a
model writes them (\\boxed{} in a sentence, \\fbox, "the answer is"). math-verify (the oracle) sees
gold as "$gold$" and the prediction text as a completion, exactly like ponder's math reward does.
Each output line: {id, source, kind, rule, gold, prediction, completion, math_verify, mv_seconds}.
The last line is {"summary": {...}} with math-verify's total time.
"""

import json
import random
import re
import sys
import time
from pathlib import Path

import sympy
from math_verify import parse, verify

INT = re.compile(r"^-?\d+$")
COMMA_INT = re.compile(r"^-?\d{1,3}(?:,\\?!?\d{3})+$")
DECIMAL = re.compile(r"^-?\d*\.\d+$")
FRAC = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")
SHORT_FRAC = re.compile(r"^(-?)\\[dt]?frac(\d)(\d)$")
TEXT_CHOICE = re.compile(r"^\\text(?:bf)?\{\(([A-E])\)\}$")
MATRIX = re.compile(r"^\\begin\{pmatrix\}(.*)\\end\{pmatrix\}$", re.S)


def split_top(s):
    """Splits s at commas outside brackets and braces (not TeX's thin space \\,)."""
    parts, depth, cur = [], 0, ""
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if c == "," and depth == 0 and not s[:i].endswith("\\"):
            parts.append(cur)
            cur = ""
        else:
            cur += c
    return parts + [cur]


def thousands(n):
    return f"{n:,}"


def read_golds(root, rng, count):
    math_rows = [json.loads(l) for l in open(root / "math/test5000.jsonl")]
    gsm_rows = [json.loads(l) for l in open(root / "gsm8k/test.jsonl")]
    # Stratified: half non-integer MATH answers (the hard cases), a quarter integer MATH answers,
    # a quarter GSM8K answers.
    integer = [r for r in math_rows if INT.match(r["answer"].strip())]
    other = [r for r in math_rows if not INT.match(r["answer"].strip())]
    golds = [("math", r["answer"]) for r in rng.sample(other, count // 2)]
    golds += [("math", r["answer"]) for r in rng.sample(integer, count // 4)]
    golds += [("gsm8k", r["answer"].split("####")[-1].strip()) for r in rng.sample(gsm_rows, count // 4)]
    return golds


def decimal_of(num, den):
    """Exact terminating decimal text of num/den, or None."""
    d = den
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return None
    value = sympy.Rational(num, den)
    text = format(float(value), ".10f").rstrip("0").rstrip(".")
    return text if sympy.Rational(text) == value else None


def sympy_forms(gold):
    """Other renderings of gold's expression by sympy (expanded, factored, decimal)."""
    try:
        parsed = parse("$" + gold + "$")
    except Exception:
        return []
    if not parsed or not isinstance(parsed[0], sympy.Expr):
        return []
    e = parsed[0]
    forms = []
    try:
        for f in (sympy.expand(e), sympy.factor(e)):
            forms.append(sympy.latex(f))
        if not e.free_symbols and not e.is_Integer and e.is_real:
            forms.append(str(sympy.N(e, 10)))
    except Exception:
        return []
    return [f for f in forms if f.replace(" ", "") != gold.replace(" ", "") and len(f) < 200]


def equivalent_rewrites(gold, rng):
    """(rule, prediction) pairs that a careful grader must accept."""
    g = gold.strip()
    out = []
    if INT.match(g):
        n = int(g)
        if abs(n) >= 1000:
            out.append(("thousands_separator", thousands(n)))
            out.append(("thousands_brace_comma", thousands(n).replace(",", "{,}")))
        out += [("x_equals", f"x = {n}"), ("trailing_zero_decimal", f"{n}.0"),
                ("unit_text", f"{n} \\text{{ units}}"), ("dollar_sign", f"\\${n}"),
                ("as_fraction", f"\\frac{{{2 * n}}}{{2}}")]
    elif COMMA_INT.match(g.replace("\\$", "")):
        out.append(("thousands_removed", re.sub(r",\\?!?", "", g)))
    elif DECIMAL.match(g):
        v = sympy.Rational(g)
        out += [("decimal_as_fraction", f"\\frac{{{v.p}}}{{{v.q}}}"), ("decimal_trailing_zero", g + "0")]
        if 0 < v < 1:
            out.append(("decimal_as_percent", f"{decimal_of(100 * v.p, v.q)}\\%"))
    elif FRAC.match(g) or SHORT_FRAC.match(g):
        sign, a, b = (FRAC.match(g) or SHORT_FRAC.match(g)).groups()
        a, b = int(a), int(b)
        if len(str(a)) == 1 and len(str(b)) == 1:
            out.append(("short_frac", f"{sign}\\frac{a}{b}"))
        out += [("slash_fraction", f"{sign}{a}/{b}"), ("dfrac", f"{sign}\\dfrac{{{a}}}{{{b}}}"),
                ("unreduced_fraction", f"{sign}\\frac{{{3 * a}}}{{{3 * b}}}"),
                ("sign_in_numerator", f"\\frac{{{sign}{a}}}{{{b}}}")]
        dec = decimal_of(a, b)
        if dec:
            out.append(("fraction_as_decimal", sign + dec))
            if a < b and len(dec) <= 6:
                out.append(("fraction_as_percent", f"{sign}{decimal_of(100 * a, b)}\\%"))
    elif TEXT_CHOICE.match(g):
        letter = TEXT_CHOICE.match(g).group(1)
        out += [("choice_letter", letter), ("choice_parenthesized", f"({letter})")]
    elif MATRIX.match(g):
        out.append(("bmatrix", g.replace("pmatrix", "bmatrix")))
    elif g.startswith("(") and g.endswith(")") and len(split_top(g[1:-1])) > 1:
        out.append(("tuple_spacing", "\\left(" + ", ".join(p.strip() for p in split_top(g[1:-1])) + "\\right)"))
    elif g[:1] in "([" and g[-1:] in ")]" and len(split_top(g[1:-1])) == 2:
        out.append(("interval_membership", f"x \\in {g}"))
    elif len(split_top(g)) > 1:
        parts = [p.strip() for p in split_top(g)]
        shuffled = parts[:]
        rng.shuffle(shuffled)
        out.append(("reordered_list", ", ".join(reversed(parts))))
        out.append(("list_as_set", "\\{" + ", ".join(shuffled) + "\\}"))
    if "\\frac" in g and not out:
        out.append(("dfrac", g.replace("\\frac", "\\dfrac")))
    # sympy's renderings are only sound where latex2sympy reads the gold faithfully: it lower-cases
    # letters (R -> r), drops base subscripts (52_8 -> 52) and misreads "\\frac \\pi4".
    if not re.search(r"\\text|[A-Z]|_|\\frac\s*\\", g):
        out += [("sympy_" + str(i), f) for i, f in enumerate(sympy_forms(g)[:2])]
    if not out:
        out.append(("spacing", " ".join(g.split()) + " "))
    return out


def near_miss(gold, rng):
    """A plausible but wrong prediction."""
    g = gold.strip()
    if INT.match(g):
        n = int(g)
        return "off_by_one", str(n + rng.choice([-1, 1]))
    if DECIMAL.match(g):
        return "last_digit", g[:-1] + str((int(g[-1]) + 1) % 10)
    m = FRAC.match(g) or SHORT_FRAC.match(g)
    if m:
        sign, a, b = m.groups()
        if a != b:
            return "inverted_fraction", f"{sign}\\frac{{{b}}}{{{a}}}"
        return "numerator_plus_one", f"{sign}\\frac{{{int(a) + 1}}}{{{b}}}"
    if TEXT_CHOICE.match(g):
        letter = TEXT_CHOICE.match(g).group(1)
        return "other_choice", f"\\text{{({'ABCDE'[('ABCDE'.index(letter) + 1) % 5]})}}"
    if g[:1] in "([" and g[-1:] in ")]" and len(split_top(g[1:-1])) > 1:
        parts = split_top(g[1:-1])
        if len(parts) == 2 and "\\infty" not in g and g[0] != g[-1].translate(str.maketrans(")]", "([")):
            return "flipped_bracket", {"(": "[", "[": "("}[g[0]] + g[1:]
        if parts[0].strip() != parts[1].strip():
            return "swapped_tuple", g[0] + ",".join([parts[1], parts[0]] + parts[2:]) + g[-1]
    if MATRIX.match(g):
        return "matrix_entry", re.sub(r"-?\d+", lambda m: str(int(m.group()) + 1), g, count=1)
    if len(split_top(g)) > 1:
        return "dropped_element", ", ".join(p.strip() for p in split_top(g)[:-1])
    digits = list(re.finditer(r"\d+", g))
    if digits:
        d = digits[0]
        return "changed_number", g[: d.start()] + str(int(d.group()) + 1) + g[d.end():]
    return "negated", f"-({g})"


WRAPPERS = [
    ("boxed", "\\boxed{{{}}}"),
    ("boxed_in_sentence", "We compute step by step and get $x = 3$ on the way. So the final answer is $\\boxed{{{}}}$."),
    ("fbox", "Therefore $\\fbox{{{}}}$"),
    ("final_answer_is", "The final answer is ${}$."),
    ("think_then_boxed", "<think>Let me try 12 first... no.</think> The answer is $\\boxed{{{}}}$."),
]


def make_pairs(golds, rng):
    pairs = []
    for i, (source, gold) in enumerate(golds):
        rewrites = equivalent_rewrites(gold, rng)
        candidates = [("equivalent", r, p) for r, p in rng.sample(rewrites, min(3, len(rewrites)))]
        candidates.append(("near_miss",) + near_miss(gold, rng))
        other = golds[(i * 7 + 13) % len(golds)][1]
        if other.strip() != gold.strip():
            candidates.append(("wrong", "other_gold", other))
        candidates.append(("identity", "same_text", gold))
        for kind, rule, prediction in candidates:
            wrap_name, wrap = rng.choice(WRAPPERS)
            pairs.append({"source": source, "kind": kind, "rule": rule, "wrapper": wrap_name,
                          "gold": gold, "prediction": prediction,
                          "completion": wrap.format(prediction)})
    return pairs


def judge(pairs):
    total = 0.0
    for i, p in enumerate(pairs):
        start = time.perf_counter()
        try:
            verdict = verify(parse("$" + p["gold"] + "$"), parse(p["completion"]))
        except Exception:  # math-verify itself failed on this pair: a 'not equivalent' verdict
            verdict = False
        p["mv_seconds"] = time.perf_counter() - start
        total += p["mv_seconds"]
        p["id"] = i
        p["math_verify"] = bool(verdict)
    return total


def main():
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    count = int(sys.argv[sys.argv.index("--golds") + 1]) if "--golds" in sys.argv else 1000
    rng = random.Random(20261124)
    pairs = make_pairs(read_golds(root, rng, count), rng)
    seconds = judge(pairs)
    with open(out, "w") as f:
        for p in pairs:
            f.write(json.dumps(p) + "\n")
        f.write(json.dumps({"summary": {"pairs": len(pairs), "math_verify_seconds": seconds}}) + "\n")
    print(f"{len(pairs)} pairs, math-verify {seconds:.2f} s ({len(pairs) / seconds:.1f} pairs/s)")


if __name__ == "__main__":
    main()
