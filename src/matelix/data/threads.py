"""Threaded dialog CSVs (`chat` / `dialogplus`): conversations rebuilt from `parent_id -> id` links.

Every row with an `Assistentin` answer yields one sample: the conversation from the thread root down to that
row, ending with that answer. The rebuild is linear in the number of rows: each row's parent chain is walked
once, with the result memoised, and a chain that loops is detected on the walk (reported, never followed
forever).
"""

from __future__ import annotations

import re

from matelix.data.samples import DatasetError, Problem, Sample, ThreadSample, Turns
from matelix.texts import tr

REQUIRED_COLUMNS = ("id", "parent_id", "Assistentin")
OPTIONAL_COLUMNS = ("system", "Benutzer", "Kontext")
# A history longer than this cannot fit any sensible chunk_size; capping it bounds the cost of reading one
# sample of a pathological single-chain file. Dropping the oldest turns is the left-truncation training
# would do anyway.
MAX_HISTORY_MESSAGES = 256
MAX_LISTED_CYCLE_ROWS = 8
NO_PARENT = frozenset({"", "nan", "none", "null", "-1"})
_FLOAT_INT = re.compile(r"^(-?\d+)\.0+$")
_UNSEEN, _ON_PATH, _DONE = 0, 1, 2


def normalise_id(value: str) -> str:
    """`12`, ` 12 ` and `12.0` are one id (spreadsheets and pandas write integer ids as floats)."""
    value = value.strip()
    match = _FLOAT_INT.match(value)
    return match.group(1) if match else value


def _user_text(benutzer: str, kontext: str) -> str:
    return f"{kontext}\n\n{benutzer}" if kontext and benutzer else kontext or benutzer


def build_chat_samples(name: str, header: list[str], rows: list[tuple[int, list[str]]]
                       ) -> tuple[list[Sample], list[Problem]]:
    """Samples and problems from the rows `(line, cells)` of a threaded dialog CSV."""
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DatasetError(tr("{file}: missing required column(s) {missing} for a threaded chat CSV (found: {found})",
                              file=name, missing=", ".join(missing), found=", ".join(header) or tr("none")))
    col = {c: header.index(c) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in header}
    width = len(header)
    problems: list[Problem] = []
    n = len(rows)
    ids: list[str] = []
    parent_ids: list[str] = []
    cells_of: list[list[str]] = []
    for row, (line, cells) in enumerate(rows, start=1):
        if len(cells) != width:
            problems.append(Problem(row=row, line=line, severity="error",
                                    message=tr("has {fields} fields, the header has {width} (check the quoting)",
                                               fields=len(cells), width=width)))
            cells = (cells + [""] * width)[:width]
        cells_of.append(cells)
        ids.append(normalise_id(cells[col["id"]]))
        parent_ids.append(normalise_id(cells[col["parent_id"]]))

    index: dict[str, int] = {}
    for i, rid in enumerate(ids):
        if not rid:
            problems.append(Problem(row=i + 1, line=rows[i][0], severity="warning",
                                    message=tr("empty id: no row can reply to this one")))
        elif rid in index:
            problems.append(Problem(row=i + 1, line=rows[i][0], severity="error",
                                    message=tr("duplicate id {id!r} (first used in row {first}); replies link to "
                                               "the first", id=rid, first=index[rid] + 1)))
        else:
            index[rid] = i

    parent = [-1] * n
    for i, pid in enumerate(parent_ids):
        if pid.lower() in NO_PARENT:
            continue
        j = index.get(pid)
        if j is None:
            problems.append(Problem(row=i + 1, line=rows[i][0], severity="error",
                                    message=tr("parent_id {id!r} does not exist; the row starts its own thread",
                                               id=pid)))
        else:
            parent[i] = j

    order, broken = _resolve_order(parent, rows, problems)
    samples = _samples_in_order(order, broken, parent, ids, cells_of, col, rows, problems)
    problems.sort(key=lambda p: p.row or 0)
    return samples, problems


def _resolve_order(parent: list[int], rows: list[tuple[int, list[str]]], problems: list[Problem]
                   ) -> tuple[list[int], list[bool]]:
    """Rows ordered parents-first, and which rows sit in (or below) a parent_id cycle. Linear time."""
    n = len(parent)
    state = [_UNSEEN] * n
    broken = [False] * n
    order: list[int] = []
    for start in range(n):
        if state[start] == _DONE:
            continue
        path: list[int] = []
        j = start
        while j != -1 and state[j] == _UNSEEN:
            state[j] = _ON_PATH
            path.append(j)
            j = parent[j]
        bad = j != -1 and (state[j] == _ON_PATH or broken[j])
        if j != -1 and state[j] == _ON_PATH:
            cycle = path[path.index(j):]
            chain = _describe_cycle(cycle)
            for k in cycle:
                problems.append(Problem(row=k + 1, line=rows[k][0], severity="error",
                                        message=tr("parent_id chain forms a cycle (rows {rows}); skipped",
                                                   rows=chain)))
            del path[len(path) - len(cycle):]
            for k in cycle:
                broken[k], state[k] = True, _DONE
            entry = cycle[0]
        else:
            entry = j
        for k in reversed(path):
            if bad:
                broken[k] = True
                problems.append(Problem(row=k + 1, line=rows[k][0], severity="error",
                                        message=tr("its thread leads into a parent_id cycle (at row {row}); "
                                                   "skipped", row=entry + 1)))
            else:
                order.append(k)
            state[k] = _DONE
    return order, broken


def _describe_cycle(cycle: list[int]) -> str:
    """`3 -> 4 -> 3`; a long cycle names its first rows and its length (each of its rows carries this text,
    so listing every row would make the report grow with the square of the cycle)."""
    if len(cycle) <= MAX_LISTED_CYCLE_ROWS:
        return " -> ".join(str(k + 1) for k in [*cycle, cycle[0]])
    shown = " -> ".join(str(k + 1) for k in cycle[:MAX_LISTED_CYCLE_ROWS])
    return f"{shown} -> … ({len(cycle)} rows) -> {cycle[0] + 1}"


def _samples_in_order(order: list[int], broken: list[bool], parent: list[int], ids: list[str],
                      cells_of: list[list[str]], col: dict[str, int], rows: list[tuple[int, list[str]]],
                      problems: list[Problem]) -> list[Sample]:
    n = len(parent)
    # Each row's history is its parent's plus its own turn, shared by reference (`Turns`), never copied.
    history: list[Turns | None] = [None] * n
    system: list[str] = [""] * n
    root: list[str] = [""] * n
    has_child = [False] * n
    for p in parent:
        if p != -1:
            has_child[p] = True

    def cell(cells: list[str], name: str) -> str:
        return cells[col[name]].strip() if name in col else ""

    made: dict[int, Sample] = {}
    for i in order:
        cells, p = cells_of[i], parent[i]
        own_system = cell(cells, "system")
        system[i] = own_system or (system[p] if p != -1 else "")
        root[i] = (root[p] if p != -1 else ids[i]) or f"row-{i + 1}"
        user = _user_text(cell(cells, "Benutzer"), cell(cells, "Kontext"))
        answer = cell(cells, "Assistentin")
        turn = ([{"role": "user", "content": user}] if user else []) + (
            [{"role": "assistant", "content": answer}] if answer else [])
        mine = history[i] = Turns(history[p] if p != -1 else None, tuple(turn))
        if mine.length > MAX_HISTORY_MESSAGES and (p == -1 or history[p].length <= MAX_HISTORY_MESSAGES):
            problems.append(Problem(row=i + 1, line=rows[i][0], severity="warning",
                                    message=tr("thread deeper than {n} messages; the oldest turns are left out "
                                               "from here on", n=MAX_HISTORY_MESSAGES)))
        if answer:
            made[i] = ThreadSample(mine, system[i], group=root[i], row=i + 1, keep=MAX_HISTORY_MESSAGES)
        elif not has_child[i]:
            problems.append(Problem(row=i + 1, line=rows[i][0], severity="warning",
                                    message=tr("empty Assistentin answer and no replies: the row produces no "
                                               "sample")))
    return [made[i] for i in range(n) if i in made and not broken[i]]
