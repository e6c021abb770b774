"""`matelix data validate FILE [--template-mode M] [--model DIR] [--json]`: the validation report for a
person (one line per problem) or as JSON. Exit status 0 when the file has no errors, 1 when it has, 2 when
the request itself is wrong (unknown mode, missing file, unloadable tokenizer)."""

from __future__ import annotations

import sys
from pathlib import Path

from matelix.data.samples import DatasetError
from matelix.data.validate import ValidationReport, load_prepared_tokenizer, validate_dataset


def format_report(report: ValidationReport) -> str:
    lines = [f"{report.file}: format {report.format or 'unreadable'}, {report.rows} rows, {report.samples} samples, "
             f"{report.error_count} errors, {report.warning_count} warnings"]
    for problem in [*report.errors, *report.warnings]:
        where = f"row {problem.row}" if problem.row is not None else "file"
        if problem.line is not None:
            where += f" (line {problem.line})"
        lines.append(f"  {problem.severity:7} {where}: {problem.message}")
    listed = len(report.errors) + len(report.warnings)
    if listed < report.error_count + report.warning_count:
        lines.append(f"  ... {report.error_count + report.warning_count - listed} more not listed")
    if report.tokens:
        t = report.tokens
        lines.append(f"tokens: p50 {t.p50}, p95 {t.p95}, max {t.max}; {t.over_chunk_size} samples longer than "
                     f"chunk_size {t.chunk_size} are cut -> {t.examples} examples, {t.dropped} dropped; "
                     f"{t.tokens:,} tokens, {t.trained_tokens:,} trained")
    lines.append("OK" if report.ok else "NOT OK")
    return "\n".join(lines)


def run_validate(file: Path, template_mode: str = "auto", model: Path | None = None, chunk_size: int = 1024,
                 column_name: str = "text", as_json: bool = False) -> int:
    if not Path(file).is_file():
        print(f"error: no dataset file at {file}", file=sys.stderr)
        return 2
    if model is not None and not Path(model).is_dir():
        print(f"error: --model {model} is not a model folder", file=sys.stderr)
        return 2
    try:
        tokenizer = load_prepared_tokenizer(model, template_mode) if model is not None else None
        report = validate_dataset(file, template_mode, tokenizer, chunk_size, column_name)
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.model_dump_json(indent=2) if as_json else format_report(report))
    return 0 if report.ok else 1
