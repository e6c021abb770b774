"""`matelix eval MODEL --tasks T[,T...] [--limit N] [--backend hf|api]`: lm-eval on a lab model, a result table.

With `--backend api` the lab is started in this process on a free loopback port and lm-eval talks to its
`/v1/completions`, exactly as it would to a running `matelix serve`.
"""

from __future__ import annotations

import json
import sys

from matelix.evaluation.harness import EvalRejected, run_evaluation


def run_eval(settings, model: str, tasks: str, limit: int | None, backend: str, *, as_json: bool) -> int:
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    last = {"line": ""}

    def progress(stage: str, fraction: float) -> None:
        line = f"{stage} {fraction:.0%}"
        if line != last["line"] and not as_json:
            print(line, file=sys.stderr, flush=True)
            last["line"] = line

    try:
        if backend == "api":
            from matelix.server.live import ThreadedServer

            with ThreadedServer(settings) as server:
                record = run_evaluation(settings, model, names, limit=limit, backend="api", base_url=server.url,
                                        progress=progress)
        else:
            record = run_evaluation(settings, model, names, limit=limit, backend=backend, progress=progress)
    except EvalRejected as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(record, indent=1, ensure_ascii=False))
        return 0
    print(f"{record['model']} ({record['backend']}, {record['seconds']:.1f} s) -> {record['id']}")
    for task, metrics in record["results"].items():
        values = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        print(f"  {task:<28} {values}  ({record['items'].get(task, '?')} items)")
    return 0
