"""Dataset file formats and their detection from the first record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

DATASET_SUFFIXES = frozenset({".csv", ".jsonl", ".json"})
CHAT_COLUMNS = frozenset({"id", "parent_id", "Assistentin"})


def detect_format(path: Path) -> str:
    """`chat`, `column`, `messages`, `sharegpt` or `alpaca`, from the header / first record."""
    suffix = path.suffix.lower()
    with path.open("r", encoding="utf-8", newline="") as fh:
        if suffix == ".csv":
            header = next(csv.reader(fh), [])
            return "chat" if CHAT_COLUMNS <= set(header) else "column"
        first = fh.readline() if suffix == ".jsonl" else fh.read()
    record = json.loads(first)
    if isinstance(record, list):
        record = record[0] if record else {}
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "alpaca"
    return "column"


def detect_format_safe(path: Path) -> str | None:
    """detect_format, or None for a file that cannot be read or parsed."""
    try:
        return detect_format(path)
    except (OSError, ValueError, UnicodeDecodeError, StopIteration, AttributeError, TypeError):
        return None
