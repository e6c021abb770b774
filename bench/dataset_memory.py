"""Server memory and time for a hostile threaded dataset: 100,000 rows forming one `parent_id` chain
(~2.5 MB of CSV), read through a real `matelix serve`.

    .venv/bin/python bench/dataset_memory.py                                  # this checkout
    .venv/bin/python bench/dataset_memory.py --baseline-src /tmp/old/src      # and an older `src/`, side by side

Per server: RSS after start-up; one `GET /datasets/{name}/preview?n=1` (seconds, RSS after); six at once
(seconds for all, the highest RSS seen while they ran, RSS 3 s after they ended); one
`POST /datasets/validate` (seconds, RSS after). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from matelix.server.live import ServerProcess  # noqa: E402

ROWS = 100_000
MIB = 1024 * 1024


def chain_csv(path: Path, rows: int) -> None:
    lines = ["id,parent_id,system,Benutzer,Kontext,Assistentin"]
    lines += [f"{i},{i - 1 if i > 1 else ''},,U{i},,A{i}" for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class PeakRss:
    """Samples a process's RSS every 50 ms while active."""

    def __init__(self, pid: int):
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(src: str | None, rows: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="matelix-dsmem-"))
    try:
        for sub in ("datasets", "training_outputs", "models"):
            (home / sub).mkdir()
        chain_csv(home / "datasets" / "chain.csv", rows)
        env = {"PYTHONPATH": src} if src else None
        with ServerProcess.lab(home, env=env) as server, httpx.Client(base_url=server.url, timeout=900) as client:
            proc = psutil.Process(server.proc.pid)
            rss = lambda: proc.memory_info().rss / MIB  # noqa: E731
            out = {"src": src or "this checkout", "csv_mib": round((home / "datasets" / "chain.csv").stat().st_size / MIB, 2),
                   "rss_start_mib": round(rss(), 1)}
            t = time.perf_counter()
            assert client.get("/datasets/chain.csv/preview", params={"n": 1}).status_code == 200
            out["preview_s"], out["rss_after_preview_mib"] = round(time.perf_counter() - t, 2), round(rss(), 1)
            with PeakRss(proc.pid) as peak, ThreadPoolExecutor(6) as pool:
                t = time.perf_counter()
                codes = list(pool.map(lambda _: client.get("/datasets/chain.csv/preview", params={"n": 1}).status_code,
                                      range(6)))
                out["six_previews_s"] = round(time.perf_counter() - t, 2)
            assert codes == [200] * 6, codes
            out["rss_peak_six_mib"] = round(peak.peak / MIB, 1)
            time.sleep(3)
            out["rss_after_six_mib"] = round(rss(), 1)
            t = time.perf_counter()
            assert client.post("/datasets/validate", json={"dataset": "chain.csv"}).status_code == 200
            out["validate_s"], out["rss_after_validate_mib"] = round(time.perf_counter() - t, 2), round(rss(), 1)
            return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--baseline-src", help="an older src/ folder to measure first, for comparison")
    args = parser.parse_args()
    results = ([measure(args.baseline_src, args.rows)] if args.baseline_src else []) + [measure(None, args.rows)]
    keys = [k for k in results[0] if k != "src"]
    print(f"{'figure':<24}" + "".join(f"{r['src'][-28:]:>30}" for r in results))
    for k in keys:
        print(f"{k:<24}" + "".join(f"{r[k]:>30}" for r in results))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
