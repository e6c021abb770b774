"""Benchmark: the data path for a 100,000-row threaded chat CSV (20,000 threads), from file to token ids.

    .venv/bin/python bench/data_pipeline.py [--rows 100000] [--threads 20000] [--baseline-rows 10000]

The CSV is generated deterministically (fixed seed): threads of varying shape (each reply answers a random
earlier row of its thread), German user messages of 5-40 words, a Kontext on one row in ten, answers of
10-120 words, some ids written as `12.0`. The tokenizer is the demo model's byte-level BPE (2k vocab,
trained on the demo datasets). Timed: `load_dataset` (read + thread rebuild) and `tokenize_samples`
(render + tokenize + mask + cut to chunk_size 1024), then packing.

Baseline: what one would write with plain Python and transformers: `csv.DictReader`, a walk from every row
up to its root (no memoisation), and per sample `apply_chat_template` twice (full text, and the prompt with
the generation prompt to find where labels start). It runs on the first `--baseline-rows` rows (whole
threads) and its rows/s is compared with ours. Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

WORDS = ("der die das und ist nicht ein eine zu mit auf für von den dem sich auch es im wir sie Daten Modell "
         "Training Text Beispiel Antwort Frage Ergebnis schnell genau lernen Netz Schicht Gewicht Lernrate "
         "Verlust Gradient Tokenizer Vorlage Satz Wort Bedeutung Erklärung einfach wichtig meistens weil "
         "deshalb aber oder wenn dann noch schon sehr viel wenig gut besser").split()
SYSTEM = "Du bist MaTeLiX, eine hilfsbereite KI-Assistentin."


def _sentence(rng: random.Random, n_words: int) -> str:
    words = rng.choices(WORDS, k=n_words)
    return " ".join(words).capitalize() + rng.choice(".?!")


def write_threads_csv(path: Path, rows: int, threads: int, seed: int = 0) -> None:
    """`rows` rows in `threads` threads; each non-root row replies to a random earlier row of its thread."""
    rng = random.Random(seed)
    per_thread = [rows // threads + (1 if t < rows % threads else 0) for t in range(threads)]
    next_id = 1
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "parent_id", "system", "Benutzer", "Kontext", "Assistentin"])
        for size in per_thread:
            ids: list[int] = []
            for k in range(size):
                rid = next_id
                next_id += 1
                parent = "" if k == 0 else rng.choice(ids[-3:])
                ids.append(rid)
                out.writerow([
                    f"{rid}.0" if rid % 7 == 0 else rid,
                    f"{parent}.0" if parent != "" and rng.random() < 0.1 else parent,
                    SYSTEM if k == 0 else "",
                    _sentence(rng, rng.randint(5, 40)),
                    _sentence(rng, rng.randint(10, 40)) if rng.random() < 0.1 else "",
                    " ".join(_sentence(rng, rng.randint(5, 15)) for _ in range(rng.randint(1, 8))),
                ])


def baseline(path: Path, tokenizer, max_rows: int) -> tuple[int, int, float]:
    """Plain approach on the first `max_rows` rows: (rows, examples, seconds)."""
    start = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as fh:
        rows = [r for _, r in zip(range(max_rows), csv.DictReader(fh), strict=False)]
    by_id = {str(int(float(r["id"]))): r for r in rows}
    examples = 0
    for row in rows:
        chain, cur = [], row
        while cur is not None:
            chain.append(cur)
            pid = cur["parent_id"]
            cur = by_id.get(str(int(float(pid)))) if pid else None
        chain.reverse()
        messages = [{"role": "system", "content": chain[0]["system"]}] if chain[0]["system"] else []
        for r in chain:
            user = f"{r['Kontext']}\n\n{r['Benutzer']}" if r["Kontext"] else r["Benutzer"]
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": r["Assistentin"]}]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"][-1024:]
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
        labels = [-100] * min(len(prompt), len(ids)) + ids[len(prompt):]
        examples += bool(labels)
    return len(rows), examples, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=20_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=1024)
    args = parser.parse_args()

    from matelix.data import load_dataset, pack_examples, tokenize_samples
    from matelix.demo.model import TinyLlamaSpec, build_tokenizer

    tokenizer = build_tokenizer(TinyLlamaSpec().vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "threads.csv"
        write_threads_csv(path, args.rows, args.threads)
        size_mb = path.stat().st_size / 1e6

        c0, t0 = time.process_time(), time.perf_counter()
        loaded = load_dataset(path)
        t1 = time.perf_counter()
        tokenized = tokenize_samples(loaded.samples, tokenizer, template_mode=loaded.render_mode,
                                     chunk_size=args.chunk_size)
        t2, c2 = time.perf_counter(), time.process_time()
        rows = pack_examples(tokenized.examples, args.chunk_size)
        t3 = time.perf_counter()
        base_rows, _, base_s = baseline(path, tokenizer, args.baseline_rows)

    ours_s = t2 - t1 + (t1 - t0)
    ours_rps = args.rows / ours_s
    base_rps = base_rows / base_s
    print(f"{args.rows:,} rows, {args.threads:,} threads, {size_mb:.1f} MB CSV; {len(loaded.samples):,} samples, "
          f"{loaded.problems and len(loaded.problems) or 0} problems")
    print(f"{'stage':38} {'seconds':>8}")
    print(f"{'load + thread rebuild':38} {t1 - t0:8.2f}")
    print(f"{'render + tokenize + mask + cut':38} {t2 - t1:8.2f}")
    print(f"{'pack (not in rows/s)':38} {t3 - t2:8.2f}")
    print(f"{'':38} {'rows/s':>8}")
    print(f"{'matelix.data (all ' + format(args.rows, ',') + ' rows)':38} {ours_rps:8.0f}")
    print(f"{'plain DictReader + apply_chat_template':38} {base_rps:8.0f}   (first {base_rows:,} rows)")
    print(f"speed-up {ours_rps / base_rps:.1f}x; whole file in {ours_s:.1f} s wall, {c2 - c0:.1f} s CPU "
          f"(goal: under 60 s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    st = tokenized.stats
    print(json.dumps({"bench": "data_pipeline", "rows": args.rows, "threads": args.threads, "csv_mb": round(size_mb, 1),
                      "samples": len(loaded.samples), "load_s": round(t1 - t0, 2), "tokenize_s": round(t2 - t1, 2),
                      "pack_s": round(t3 - t2, 2), "total_s": round(ours_s, 2), "cpu_s": round(c2 - c0, 2),
                      "loadavg": round(os.getloadavg()[0], 1), "rows_per_s": round(ours_rps),
                      "baseline_rows": base_rows, "baseline_rows_per_s": round(base_rps),
                      "speedup": round(ours_rps / base_rps, 2), "tokens": st["tokens"],
                      "trained_tokens": st["trained_tokens"], "cut": st["cut"], "packed_rows": len(rows),
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
