"""`matelix ngrams mine DATASET --model DIR [--top-k N] [--json]`: the phrases a run with `use_ngrams` would
add to the model's tokenizer and the compression they give on the dataset, without training or writing.

Exit status 0 on success, 2 when the request is wrong (missing file or model folder, unreadable dataset).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from matelix.training.config import NgramOptions, describe
from matelix.training.dataprep import mining_texts
from matelix.training.ngrams import mine, token_map


def format_result(result, shown: int) -> str:
    t = result.totals()
    lines = [f"{t['texts']} texts: {t['tokens_before']:,} tokens -> {t['tokens_after']:,} tokens with "
             f"{t['added_tokens']} added phrases (-{t['saved_pct']:.1f}%), phrases up to {t['max_len']} tokens"
             f"{' (code-heavy)' if t['code_heavy'] else ''}, mined in {t['seconds']:.1f}s"]
    if result.phrases and shown > 0:
        lines.append(f"{'saves':>7} {'uses':>6} {'tokens':>6}  phrase")
        for p in result.phrases[:shown]:
            lines.append(f"{p.savings:>7} {p.used:>6} {len(p.source_ids):>6}  {p.text!r}")
        if len(result.phrases) > shown:
            lines.append(f"... {len(result.phrases) - shown} more (--show N, or --json for all)")
    return "\n".join(lines)


def run_mine(dataset: Path, model: Path, options: dict, *, template_mode: str = "auto",
             column_name: str = "text", as_json: bool = False, shown: int = 30) -> int:
    """Mine `dataset` with `model`'s tokenizer; `options` are `NgramOptions` fields. Returns the exit code."""
    from matelix.data import DatasetError, load_dataset
    from matelix.data.validate import load_prepared_tokenizer

    try:
        opts = NgramOptions(**options)
    except ValueError as exc:  # pydantic's ValidationError is one
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    if not Path(model).is_dir():
        print(f"error: --model {model} is not a model folder", file=sys.stderr)
        return 2
    try:
        loaded = load_dataset(dataset, template_mode, column_name)
        tokenizer = load_prepared_tokenizer(model, template_mode)
    except (DatasetError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    texts = mining_texts(loaded.samples)
    if not texts:
        print(f"error: {dataset}: no samples to mine", file=sys.stderr)
        return 2
    result = mine(tokenizer, texts, opts, log=(lambda line: print(line, file=sys.stderr)) if not as_json
                  else (lambda line: None))
    if as_json:
        print(json.dumps(token_map(result, len(tokenizer), len(tokenizer) + len(result.phrases)),
                         ensure_ascii=False, indent=1))
    else:
        print(format_result(result, shown))
    return 0
