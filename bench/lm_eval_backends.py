"""lm-evaluation-harness on one model through both of the lab's backends, side by side.

    python bench/lm_eval_backends.py [--model models/tiny-demo] [--tasks matelix_general_en,matelix_general_de]
                                     [--limit N] [--home DIR]

`hf`: lm-eval's in-process Hugging Face backend (batch 16). `api`: lm-eval's local-completions client against
the lab's /v1/completions (16 concurrent requests, echo + logprobs), the lab started in this process. Prints
per task the accuracy of each backend, how many items chose differently, and each backend's wall time
(model loading included) with the ratio hf / api. Results are also stored under <home>/evaluations/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/tiny-demo")
    parser.add_argument("--tasks", default="matelix_general_en,matelix_general_de")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--home", type=Path, default=Path.cwd())
    args = parser.parse_args()

    from matelix.evaluation.harness import run_evaluation
    from matelix.server.live import ThreadedServer
    from matelix.settings import Settings

    settings = Settings(home=args.home)
    tasks = [t for t in args.tasks.split(",") if t]
    out = {}
    start = time.perf_counter()
    out["hf"] = run_evaluation(settings, args.model, tasks, limit=args.limit, backend="hf")
    hf_s = time.perf_counter() - start
    with ThreadedServer(settings) as server:
        start = time.perf_counter()
        out["api"] = run_evaluation(settings, args.model, tasks, limit=args.limit, backend="api",
                                    base_url=server.url)
        api_s = time.perf_counter() - start
    print(f"model {args.model}, limit {args.limit or 'all'}")
    print(f"{'task':<22} {'items':>5} {'acc hf':>8} {'acc api':>8} {'differ':>6}")
    for task in tasks:
        hf, api = out["hf"]["results"][task], out["api"]["results"][task]
        items = out["hf"]["items"].get(task, 0)
        differ = sum(a != b for a, b in zip(out["hf"]["per_item"][task], out["api"]["per_item"][task],
                                            strict=True))
        print(f"{task:<22} {items:>5} {hf['acc']:>8.3f} {api['acc']:>8.3f} {differ:>6}")
    print(f"wall time: hf {hf_s:.1f} s, api {api_s:.1f} s (hf / api = {hf_s / api_s:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
