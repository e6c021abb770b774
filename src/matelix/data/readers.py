"""Reading dataset files into text, CSV rows or JSON records, with errors that say where the file is bad."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from matelix.data.samples import DatasetError
from matelix.texts import tr

# Large text cells (long documents in column mode) are legitimate; the stdlib default is 128 KiB.
csv.field_size_limit(64 * 1024 * 1024)
# Python's JSON parser recurses once per nesting level and gives up near the interpreter's recursion limit
# (RecursionError, not ValueError); no dataset record nests anywhere near this deep.
MAX_JSON_DEPTH = 500


def too_deep(line: int, row: int | None = None) -> str:
    """The finding for a record nested deeper than MAX_JSON_DEPTH, at `line` (record `row` of a JSONL)."""
    if row is None:
        return tr("line {line} is nested too deeply (more than {depth} levels of arrays/objects); not a dataset "
                  "record", line=line, depth=MAX_JSON_DEPTH)
    return tr("line {line} (record {row}) is nested too deeply (more than {depth} levels of arrays/objects); not a "
              "dataset record", line=line, row=row, depth=MAX_JSON_DEPTH)


def read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a BOM is dropped); DatasetError names the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(tr("{file}: cannot read file ({reason})", file=path.name,
                               reason=exc.strerror or exc)) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(tr(
            "{file}: line {line} is not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); save the file as UTF-8",
            file=path.name, line=line, byte=data[exc.start], offset=exc.start)) from exc


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and data rows as `(line, cells)`; strict quoting, so a stray quote is an error, not a guess."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(tr("{file}: the file is empty (no header row)", file=path.name))
        line = reader.line_num + 1
        for cells in reader:
            if cells:
                rows.append((line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(tr("{file}: bad CSV quoting in data row {row} (line {line}): {reason}", file=path.name,
                              row=len(rows) + 1, line=reader.line_num, reason=exc)) from exc
    return [h.strip() for h in header], rows


def too_deep_line(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """The line where brackets outside strings first nest deeper than `limit` (1 if they never do)."""
    depth, line, in_string, escaped = 0, 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        elif escaped:
            escaped = False
        elif in_string:
            escaped, in_string = ch == "\\", ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth -= 1
    return 1


def iter_json_records(path: Path) -> Iterator[tuple[int, int, object]]:
    """`(row, line, record)` for every record of a JSONL file or a JSON array; bad JSON is a DatasetError."""
    text = read_text(path)
    if path.suffix.lower() == ".jsonl":
        row = 0
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            row += 1
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(tr("{file}: line {line} (record {row}) is not valid JSON: {reason}",
                                      file=path.name, line=line_no, row=row, reason=exc)) from exc
            except RecursionError as exc:
                raise DatasetError(f"{path.name}: {too_deep(line_no, row)}") from exc
            yield row, line_no, record
        return
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DatasetError(tr("{file}: not valid JSON: {reason}", file=path.name, reason=exc)) from exc
    except RecursionError as exc:
        raise DatasetError(f"{path.name}: {too_deep(too_deep_line(text))}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DatasetError(tr("{file}: a JSON dataset must be a list of records", file=path.name))
    for row, record in enumerate(data, start=1):
        yield row, None, record
