"""Benchmark: n-gram mining speed on ~10 MB of mixed prose + code, and the compression it gives.

    .venv/bin/python bench/ngrams.py [--mb 10] [--top-k 1500]

The corpus is generated deterministically (fixed seed): German/English prose sentences drawn from a Zipf-
weighted word list, and Python functions built from templates with varied names. A byte-level BPE tokenizer
(the demo model's kind, 4k vocab) is trained on the first 2 MB. Mining runs the same code a training run does
(`matelix.training.ngrams.mine`). The counting step alone is compared with the straightforward approach, a
Python `Counter` of token tuples for every length 2..max_len, timed on a 1 MB slice and scaled linearly to
the corpus size (it grows at least linearly). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

WORDS = ("der die das und ist nicht ein eine zu mit auf für von den dem sich auch es im wir sie Daten Modell "
         "Training Text Beispiel Antwort Frage Ergebnis schnell genau lernen the of and to in is that for it "
         "with as on be this are by model data training token value result will can more than each which "
         "when these should because after before between through").split()
NAMES = "user item value config path result count index model batch tokens loss step text record".split()
CODE_TEMPLATES = (
    "def {f}_{g}(self, {a}, {b}=None):\n    \"\"\"Return the {a} of {b}.\"\"\"\n    if {b} is None:\n"
    "        return self.{a}\n    for {a} in self.{g}:\n        self.{f}.append({a})\n    return {b}\n\n",
    "class {F}{G}:\n    def __init__(self, {a}, {b}):\n        self.{a} = {a}\n        self.{b} = {b}\n\n"
    "    def __repr__(self):\n        return f\"{F}{G}({{self.{a}!r}}, {{self.{b}!r}})\"\n\n",
    "import os\nimport json\n\n\ndef load_{f}(path):\n    with open(path, encoding=\"utf-8\") as fh:\n"
    "        {a} = json.load(fh)\n    return [{b} for {b} in {a} if {b}.get(\"{g}\")]\n\n",
)


def synthetic_texts(n_bytes: int, seed: int = 0) -> list[str]:
    """Deterministic samples of ~1 KB, alternating prose paragraphs and code, until `n_bytes` characters."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(WORDS))]
    texts, total = [], 0
    while total < n_bytes:
        if rng.random() < 0.5:
            sentences = []
            for _ in range(rng.randint(4, 10)):
                words = rng.choices(WORDS, weights, k=rng.randint(6, 16))
                sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
            text = " ".join(sentences)
        else:
            parts = []
            for _ in range(rng.randint(1, 3)):
                f, g, a, b = rng.sample(NAMES, 4)
                parts.append(rng.choice(CODE_TEMPLATES).format(f=f, g=g, a=a, b=b, F=f.title(), G=g.title()))
            text = "".join(parts)
        texts.append(text)
        total += len(text)
    return texts


def counter_baseline(ids: list[list[int]], max_len: int, min_count: int) -> float:
    """Seconds for the plain approach: a Counter of tuples per length."""
    started = time.perf_counter()
    for n in range(2, max_len + 1):
        counter: Counter = Counter()
        for seq in ids:
            counter.update(tuple(seq[i:i + n]) for i in range(len(seq) - n + 1))
        _ = [k for k, c in counter.items() if c >= min_count]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="corpus size in MB of text")
    parser.add_argument("--top-k", type=int, default=1500)
    parser.add_argument("--max-len", type=int, default=12)
    parser.add_argument("--min-count", type=int, default=8)
    args = parser.parse_args()

    from matelix.demo.model import build_tokenizer
    from matelix.training.config import NgramOptions
    from matelix.training.ngram_count import count_ngrams, layout
    from matelix.training.ngrams import mine

    texts = synthetic_texts(int(args.mb * 1e6))
    mb = sum(map(len, texts)) / 1e6
    tokenizer = build_tokenizer(4096, iter(synthetic_texts(2_000_000, seed=1)))
    opts = NgramOptions(max_len=args.max_len, top_k=args.top_k, min_count=args.min_count,
                        max_samples=len(texts))
    cpu_started = time.process_time()
    result = mine(tokenizer, texts, opts, log=lambda line: print("  " + line))
    mine_cpu_s = time.process_time() - cpu_started

    # counting alone, same n-gram lengths and threshold: numpy rolling hashes on all 10 MB vs a Counter of
    # tuples on a 1 MB slice, scaled to the corpus size
    all_ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    started = time.perf_counter()
    count_ngrams(layout(all_ids), result.max_len, args.min_count)
    count_s = time.perf_counter() - started
    slice_texts = synthetic_texts(1_000_000, seed=2)
    slice_mb = sum(map(len, slice_texts)) / 1e6
    slice_ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch_fast(slice_texts, add_special_tokens=False)]
    base_s = counter_baseline(slice_ids, result.max_len, args.min_count) * mb / slice_mb

    print(f"\ncorpus: {mb:.2f} MB, {len(texts)} texts, code-heavy={result.code_heavy}, max_len={result.max_len}")
    print(f"{'step':<52}{'seconds':>9}{'MB/s':>9}")
    rows = [("whole mining (encode, count, choose, verify)", result.seconds),
            ("counting only: numpy rolling hashes", count_s),
            ("counting only: Counter of tuples (1 MB, scaled)", base_s)]
    for name, seconds in rows:
        print(f"{name:<52}{seconds:>9.1f}{mb / seconds:>9.2f}")
    print(f"counting speed-up vs Counter: {base_s / count_s:.1f}x")
    print(f"whole mining: {mine_cpu_s:.1f} s CPU time of the process (load average {os.getloadavg()[0]:.1f})")
    print(f"compression: {result.tokens_before} -> {result.tokens_after} tokens (-{result.saved_pct:.1f}%)"
          f" with {len(result.phrases)} added tokens")
    print(json.dumps({"bench": "ngrams", "mb": round(mb, 2), "texts": len(texts), "seconds": round(result.seconds, 2),
                      "mb_per_s": round(mb / result.seconds, 3), "cpu_s": round(mine_cpu_s, 2),
                      "load_avg": round(os.getloadavg()[0], 1), "count_s": round(count_s, 2),
                      "baseline_counter_s": round(base_s, 1), "count_speedup": round(base_s / count_s, 1), "tokens_before": result.tokens_before,
                      "tokens_after": result.tokens_after, "saved_pct": round(result.saved_pct, 2),
                      "added_tokens": len(result.phrases), "max_len": result.max_len,
                      "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
