"""Dataset validation (a JSON-serialisable report) and the preview of rendered samples with the trained
span marked. Shared by `matelix data validate`, `POST /datasets/validate` and the dataset preview."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, Field

from matelix.data.budget import MAX_STATS_MESSAGES
from matelix.data.load import check_template_mode, load_dataset, render_mode_of
from matelix.data.render import render_spans, template_style
from matelix.data.samples import DatasetError, Problem
from matelix.data.template import setup_tokenizer
from matelix.data.tokenize import cut_windows, token_spans
from matelix.texts import tr

# A report stays readable (and a response small) even for a file where every row is broken.
MAX_LISTED_PROBLEMS = 1000


class TokenStats(BaseModel):
    """Token lengths of the rendered samples, measured with a model's tokenizer."""

    chunk_size: int
    p50: int
    p95: int
    max: int
    over_chunk_size: int = Field(description="samples longer than chunk_size (they are cut)")
    examples: int = Field(description="training examples after cutting")
    dropped: int = Field(description="samples with nothing left to train")
    tokens: int
    trained_tokens: int
    measured_samples: int = Field(description="samples these figures cover: all, unless the file has more than "
                                              f"{MAX_STATS_MESSAGES} messages (then the first samples up to that)")


class ValidationReport(BaseModel):
    """What a dataset file holds and everything wrong with it; `ok` when there is no error."""

    file: str
    format: str | None
    template_mode: str
    rows: int
    samples: int
    ok: bool
    error_count: int
    warning_count: int
    errors: list[Problem] = Field(description=f"errors with row numbers (at most {MAX_LISTED_PROBLEMS} listed)")
    warnings: list[Problem] = Field(description=f"warnings with row numbers (at most {MAX_LISTED_PROBLEMS} listed)")
    tokens: TokenStats | None = None


def load_prepared_tokenizer(model_dir: Path | str, template_mode: str = "auto", *, trust_remote_code: bool = False):
    """A local model's tokenizer, set up as training sets it up (role tokens, pad token, template);
    `training.modelsetup.load_tokenizer` is the plain one the worker prepares itself."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    setup_tokenizer(tokenizer, "dialogplus" if render_mode_of(template_mode) == "dialogplus" else "chat")
    return tokenizer


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def token_stats(samples, tokenizer, template_mode: str, chunk_size: int) -> TokenStats:
    """Length percentiles of the full rendered samples, and what chunk_size does to them (one tokenization)."""
    lengths: list[int] = []
    over = examples = dropped = tokens = trained = 0
    for _, ids, a, b in token_spans(list(_within_budget(samples)), tokenizer, template_mode=template_mode):
        lengths.append(len(ids))
        windows = cut_windows(len(ids), a, b, chunk_size)
        over += len(ids) > chunk_size and bool(windows)
        dropped += not windows
        examples += len(windows)
        tokens += sum(e - s for s, e, _, _ in windows)
        trained += sum(hi - lo for _, _, lo, hi in windows)
    lengths.sort()
    return TokenStats(chunk_size=chunk_size, p50=_percentile(lengths, 0.5), p95=_percentile(lengths, 0.95),
                      max=lengths[-1] if lengths else 0, over_chunk_size=over, examples=examples, dropped=dropped,
                      tokens=tokens, trained_tokens=trained, measured_samples=len(lengths))


def _within_budget(samples, budget: int = MAX_STATS_MESSAGES):
    """The first samples whose messages (a text sample counts one) fit in `budget`, at least one."""
    used = 0
    for k, sample in enumerate(samples):
        used += sample.message_count() or 1
        if used > budget and k:
            return
        yield sample


def validate_dataset(path: Path, template_mode: str = "auto", tokenizer=None, chunk_size: int = 1024,
                     column_name: str = "text") -> ValidationReport:
    """Validate `path`. A file that cannot be read at all gives a report with that one error (row/line named
    in its message); an unknown template_mode raises DatasetError (it is a wrong request, not a bad file)."""
    check_template_mode(template_mode)
    path = Path(path)
    try:
        loaded = load_dataset(path, template_mode, column_name)
    except DatasetError as exc:
        problem = Problem(severity="error", message=str(exc))
        return ValidationReport(file=path.name, format=None, template_mode=template_mode, rows=0, samples=0,
                                ok=False, error_count=1, warning_count=0, errors=[problem], warnings=[])
    errors, warnings = loaded.errors, loaded.warnings
    if not loaded.samples:
        errors.append(Problem(severity="error", message=tr("the file produces no training samples")))
    stats = None
    if tokenizer is not None and loaded.samples:
        mode = loaded.render_mode if template_mode == "auto" else template_mode
        stats = token_stats(loaded.samples, tokenizer, mode, chunk_size)
    return ValidationReport(file=path.name, format=loaded.format, template_mode=template_mode, rows=loaded.rows,
                            samples=len(loaded.samples), ok=not errors, error_count=len(errors),
                            warning_count=len(warnings), errors=errors[:MAX_LISTED_PROBLEMS],
                            warnings=warnings[:MAX_LISTED_PROBLEMS], tokens=stats)


class PreviewSample(BaseModel):
    """One rendered sample: the full text, and the same text as parts marked trained or not."""

    row: int
    group: str
    text: str
    parts: list[dict] = Field(description='[{"text": ..., "trained": bool}, ...] in order; joined = text')


def preview_samples(path: Path, template_mode: str = "auto", tokenizer=None, n: int = 5,
                    column_name: str = "text", train_on_prompt: bool = False) -> tuple[str, list[PreviewSample]]:
    """The detected format and the first `n` samples rendered exactly as the model sees them."""
    loaded = load_dataset(path, template_mode, column_name, max_samples=n)
    mode = loaded.render_mode if template_mode == "auto" else template_mode
    style = template_style(tokenizer, mode)
    out = []
    for sample in loaded.samples[:n]:
        r = render_spans(sample, tokenizer, style, train_on_prompt=train_on_prompt)
        parts = [{"text": r.text[:r.start], "trained": False}, {"text": r.text[r.start:r.end], "trained": True},
                 {"text": r.text[r.end:], "trained": False}]
        out.append(PreviewSample(row=sample.row, group=sample.group, text=r.text,
                                 parts=[p for p in parts if p["text"]]))
    return loaded.format, out
