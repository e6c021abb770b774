"""`matelix export`: run one export in the terminal with a progress bar and print its parity result.

Exit 0 when the export is written and verified, 1 when it is written but the parity check found a
mismatch (exact formats) , 2 when the request is refused (nothing written).
"""

from __future__ import annotations

import json
import sys

from matelix.export.runner import ExportRejected, export_run
from matelix.settings import Settings


def run_export(settings: Settings, run_id: str, fmt: str, quant: str | None, out: str | None, *,
               as_json: bool = False) -> int:
    from tqdm import tqdm

    bar = tqdm(total=100, desc="export", unit="%", file=sys.stderr, disable=as_json,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def progress(stage: str, fraction: float) -> None:
        bar.set_postfix_str(stage)
        bar.update(max(0, round(100 * fraction) - bar.n))

    try:
        record = export_run(settings, run_id, fmt, quant, out, progress)
    except ExportRejected as exc:
        bar.close()
        print(f"error ({exc.status}): {exc.message}", file=sys.stderr)
        return 2
    bar.close()
    parity = record["parity"]
    if as_json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        mib = record["size_bytes"] / 2**20
        print(f"{record['format']}{'/' + record['quant'] if record['quant'] else ''} export of {run_id} "
              f"-> {record['path']} ({mib:.1f} MiB, {record['seconds']:.0f} s)")
        print(f"parity ({parity['loader']}): {parity['summary']}; max |Δ logprob| "
              f"{parity['logprob_max_abs_diff']:.2e}")
    return 1 if parity["passed"] is False else 0
