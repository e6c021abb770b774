"""`load_dataset`: a dataset file (CSV, JSONL or JSON) read into samples, with every problem found."""

from __future__ import annotations

from pathlib import Path

from matelix.data.budget import gc_paused
from matelix.data.formats import (
    CSV_SUFFIXES,
    DATASET_SUFFIXES,
    RECORD_FORMATS,
    TEMPLATE_MODES,
    format_of_header,
    format_of_record,
)
from matelix.data.readers import iter_json_records, read_csv
from matelix.data.samples import DatasetError, LoadedDataset, Problem, Sample, ThreadSample, Turns
from matelix.data.threads import build_chat_samples
from matelix.texts import tr

ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant",
                "bot": "assistant", "model": "assistant"}


def check_template_mode(template_mode: str) -> str:
    if template_mode not in TEMPLATE_MODES:
        raise DatasetError(tr("unknown template_mode {mode!r}; use one of {modes}", mode=template_mode,
                               modes=", ".join(TEMPLATE_MODES)))
    return template_mode


def render_mode_of(template_mode: str) -> str:
    """How samples of a format or template mode render: `column`, `dialogplus` or `chat` (all the others)."""
    return template_mode if template_mode in ("column", "dialogplus") else "chat"


def load_dataset(path: Path, template_mode: str = "auto", column_name: str = "text",
                 max_samples: int | None = None) -> LoadedDataset:
    """Read `path` into samples. `template_mode` forces a format (`auto` detects it from the file).

    Raises DatasetError for a file that cannot be read (encoding, quoting, missing columns, unknown mode);
    row-level findings go to `.problems` and the affected rows are skipped or repaired as each message says.
    `max_samples` stops reading a JSON/JSONL file once that many samples are found (a preview); a CSV is read
    whole, as a reply may come before its parent, but its samples' histories are built only when read.
    """
    check_template_mode(template_mode)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DATASET_SUFFIXES:
        raise DatasetError(tr("{file}: unsupported file type {suffix!r}; use {suffixes} (Parquet is not supported)",
                              file=path.name, suffix=suffix or "(none)", suffixes=", ".join(sorted(DATASET_SUFFIXES))))
    if not path.is_file():
        raise DatasetError(tr("{file}: no such dataset file", file=path.name))
    with gc_paused():  # nothing read here forms a cycle; the collector would only slow the read down
        if suffix in CSV_SUFFIXES:
            return _load_csv(path, template_mode, column_name)
        return _load_records(path, template_mode, column_name, max_samples)


def _load_csv(path: Path, template_mode: str, column_name: str) -> LoadedDataset:
    if template_mode in RECORD_FORMATS:
        raise DatasetError(tr("{file}: template_mode {mode!r} needs a JSONL or JSON file, not CSV", file=path.name,
                              mode=template_mode))
    header, rows = read_csv(path)
    fmt = format_of_header(header) if template_mode == "auto" else template_mode
    if fmt == "column":
        return _column_from_cells(path.name, header, rows, column_name)
    samples, problems = build_chat_samples(path.name, header, rows)
    return LoadedDataset(format=fmt, samples=samples, problems=problems, rows=len(rows), render_mode=fmt)


def _column_from_cells(name: str, header: list[str], rows: list[tuple[int, list[str]]],
                       column_name: str) -> LoadedDataset:
    if column_name not in header:
        raise DatasetError(tr("{file}: missing column {column!r} with the text (found columns: {found}); name the "
                              "column that holds the text (column_name), or use the columns of a chat format",
                              file=name, column=column_name, found=", ".join(header) or tr("none")))
    at = header.index(column_name)
    samples, problems = [], []
    for row, (line, cells) in enumerate(rows, start=1):
        if len(cells) != len(header):
            problems.append(Problem(row=row, line=line, severity="error",
                                    message=tr("has {fields} fields, the header has {width} (check the quoting)",
                                               fields=len(cells), width=len(header))))
        text = cells[at].strip() if at < len(cells) else ""
        if text:
            samples.append(Sample(text=text, group=f"row-{row}", row=row))
        else:
            problems.append(Problem(row=row, line=line, severity="warning",
                                    message=tr("empty {column!r}: the row produces no sample", column=column_name)))
    return LoadedDataset(format="column", samples=samples, problems=problems, rows=len(rows),
                         render_mode="column")


def _load_records(path: Path, template_mode: str, column_name: str, max_samples: int | None = None
                  ) -> LoadedDataset:
    if template_mode in ("chat", "dialogplus"):
        fmt, render = "auto", template_mode
    else:
        fmt, render = template_mode, render_mode_of(template_mode)
    loaded = LoadedDataset(format=fmt)
    for row, line, record in iter_json_records(path):
        loaded.rows = row
        if fmt == "auto":
            fmt = loaded.format = format_of_record(record)
            render = "column" if fmt == "column" else render
        if not isinstance(record, dict):
            loaded.problems.append(Problem(row=row, line=line, severity="error",
                                           message=tr("record is a {type}, not an object; skipped",
                                                      type=type(record).__name__)))
            continue
        try:
            if fmt == "column":
                _column_record(record, row, column_name, loaded)
            else:
                _chat_record(fmt, record, row, loaded)
        except _RecordProblem as exc:
            loaded.problems.append(Problem(row=row, line=line, severity=exc.severity, message=str(exc)))
        except RecursionError:  # content parts nested so deeply that reading them recurses too far
            loaded.problems.append(Problem(row=row, line=line, severity="error",
                                           message=tr("the record is nested too deeply; skipped")))
        if max_samples is not None and len(loaded.samples) >= max_samples:
            break
    if fmt == "auto":
        loaded.format = "column" if render == "column" else "messages"
    loaded.render_mode = render
    return loaded


class _RecordProblem(Exception):
    def __init__(self, message: str, severity: str = "error"):
        super().__init__(message)
        self.severity = severity


def _text(value: object, where: str) -> str:
    """Message content as text: a string, or OpenAI-style content parts (their `text` joined)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        return "".join(str(p.get("text", "")) for p in value if p.get("type", "text") == "text").strip()
    raise _RecordProblem(tr("{where} must be text, not {type}; skipped", where=where, type=type(value).__name__))


def _column_record(record: dict, row: int, column_name: str, loaded: LoadedDataset) -> None:
    if column_name not in record:
        raise _RecordProblem(tr("no {column!r} field; skipped", column=column_name))
    text = _text(record[column_name], column_name)
    if not text:
        raise _RecordProblem(tr("empty {column!r}: the record produces no sample", column=column_name), "warning")
    loaded.samples.append(Sample(text=text, group=f"row-{row}", row=row))


def _messages_of(fmt: str, record: dict) -> list[dict]:
    if fmt == "alpaca":
        instruction = _text(record.get("instruction"), "instruction")
        extra = _text(record.get("input"), "input")
        out = [{"role": "user", "content": f"{instruction}\n\n{extra}" if instruction and extra
                else instruction or extra},
               {"role": "assistant", "content": _text(record.get("output"), "output")}]
    else:
        key, role_key, content_key = (("messages", "role", "content") if fmt == "messages"
                                      else ("conversations", "from", "value"))
        items = record.get(key)
        if not isinstance(items, list):
            raise _RecordProblem(tr("{key!r} must be a list of messages; skipped", key=key))
        out = []
        for k, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise _RecordProblem(tr("{key}[{k}] is not an object; skipped", key=key, k=k))
            role = ROLE_ALIASES.get(str(item.get(role_key, "")).strip().lower())
            if role is None:
                raise _RecordProblem(tr("{key}[{k}] has unknown {role_key} {role!r} (use system, user or assistant); "
                                        "skipped", key=key, k=k, role_key=role_key, role=item.get(role_key)))
            out.append({"role": role, "content": _text(item.get(content_key), f"{key}[{k}].{content_key}")})
    system = _text(record.get("system"), "system")
    if system and not (out and out[0]["role"] == "system"):
        out.insert(0, {"role": "system", "content": system})
    return out


def _chat_record(fmt: str, record: dict, row: int, loaded: LoadedDataset) -> None:
    """One sample per non-empty assistant turn, each with its real history (as for threaded CSVs)."""
    messages = _messages_of(fmt, record)
    group = str(record.get("id", f"row-{row}"))
    answers = [k for k, m in enumerate(messages) if m["role"] == "assistant" and m["content"]]
    if not answers:
        raise _RecordProblem(tr("no non-empty assistant answer: the record produces no sample"), "warning")
    # The samples share their history (`Turns`): a record of N turns costs N message references, not N * N.
    turns, last, made = None, 0, []
    for k in answers:
        for message in messages[last:k + 1]:
            turns = Turns(turns, (message,))
        last = k + 1
        made.append(ThreadSample(turns, "", group=group, row=row))
    loaded.samples.extend(made)
