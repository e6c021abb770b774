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
    if t["left_out_by_model_check"]:
        lines.append(f"{t['left_out_by_model_check']} more phrases left out: the model reads them no better than"
                     " their pieces")
    if result.phrases and shown > 0:
        lines.append(f"{'saves':>7} {'uses':>6} {'tokens':>6} {'nats':>6}  phrase")
        for p in result.phrases[:shown]:
            nats = "" if p.loss_change is None else f"{p.loss_change:+.2f}"
            lines.append(f"{p.savings:>7} {p.used:>6} {len(p.source_ids):>6} {nats:>6}  {p.text!r}")
        if len(result.phrases) > shown:
            lines.append(f"... {len(result.phrases) - shown} more (--show N, or --json for all)")
    return "\n".join(lines)


def _checking_model(folder: Path, tokenizer):
    """The folder's model in fp32 on the CPU, its vocabulary grown to `tokenizer` as a run grows it; None
    when the folder holds only a tokenizer."""
    if not (folder / "config.json").is_file() or (not any(folder.glob("*.safetensors")) \
            and not any(folder.glob("*.bin"))):
        return None
    import torch
    from transformers import AutoModelForCausalLM

    from matelix.remote_code import needs_remote_code, remote_code_message
    from matelix.training.modelsetup import grow_vocabulary

    if needs_remote_code(folder):
        raise ValueError(remote_code_message(folder.name))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    grow_vocabulary(model, tokenizer)
    return model


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
    log = (lambda line: print(line, file=sys.stderr)) if not as_json else (lambda line: None)
    checker = None
    if opts.screen_tokens > 0:  # the check a run makes with its model (`ngram_screen`), so both add the same
        try:
            checker = _checking_model(Path(model), tokenizer)
        except (OSError, ValueError) as exc:
            print(f"error: --model {model}: {exc}", file=sys.stderr)
            return 2
        if checker is None:
            log(f"n-grams: {model} holds no weights: phrases not checked with the model")
    result = mine(tokenizer, texts, opts, log=log, model=checker)
    if as_json:
        print(json.dumps(token_map(result, len(tokenizer), len(tokenizer) + len(result.phrases)),
                         ensure_ascii=False, indent=1))
    else:
        print(format_result(result, shown))
    return 0
