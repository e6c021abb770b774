"""Dataset file formats: the suffixes the lab reads, the template modes, and detection from the header or
first record.

Formats: `column` (one text per row), `chat` (threaded dialog CSV; `dialogplus` is the same file rendered
with an end-of-turn token after every turn), `messages` (OpenAI-style `messages`), `sharegpt`
(`conversations` with `from`/`value`) and `alpaca` (`instruction`/`input`/`output`). Parquet is not read:
it would need pyarrow, which the lab does not depend on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

DATASET_SUFFIXES = frozenset({".csv", ".jsonl", ".json"})
CSV_SUFFIXES = frozenset({".csv"})
CHAT_COLUMNS = frozenset({"id", "parent_id", "Assistentin"})
RECORD_FORMATS = ("messages", "sharegpt", "alpaca")
FORMATS = ("column", "chat", "dialogplus", *RECORD_FORMATS)
TEMPLATE_MODES = ("auto", *FORMATS)


def format_of_record(record: object) -> str:
    """The record format of one JSON object (`column` when it has none of the known keys)."""
    if not isinstance(record, dict):
        return "column"
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "alpaca"
    return "column"


def format_of_header(header: list[str]) -> str:
    return "chat" if CHAT_COLUMNS <= {h.strip() for h in header} else "column"


def detect_format(path: Path, suffix: str | None = None) -> str:
    """`chat`, `column`, `messages`, `sharegpt` or `alpaca`, from the header / first record.

    `suffix` overrides the file's own (for a temporary file holding an upload)."""
    suffix = (suffix or path.suffix).lower()
    if suffix == ".csv":
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            return format_of_header(next(csv.reader(fh), []))
    if suffix == ".jsonl":
        with path.open("r", encoding="utf-8-sig") as fh:
            first = next((line for line in fh if line.strip()), "{}")
        return format_of_record(json.loads(first))
    record = json.loads(path.read_text(encoding="utf-8-sig"))
    if isinstance(record, list):
        record = record[0] if record else {}
    return format_of_record(record)


def detect_format_safe(path: Path) -> str | None:
    """detect_format, or None for a file that cannot be read or parsed."""
    try:
        return detect_format(path)
    except (OSError, ValueError, UnicodeDecodeError, csv.Error, RecursionError):  # RecursionError: nested too deep
        return None
