"""The loaded form of a dataset: training samples, the problems found while reading, and the error for
files that cannot be read at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

Severity = Literal["error", "warning"]


class DatasetError(ValueError):
    """A dataset file that cannot be read: bad encoding, bad CSV quoting, missing columns, unknown mode."""


class Problem(BaseModel):
    """One finding in a dataset. `row` is the 1-based data row (header not counted); `line` the file line."""

    row: int | None = None
    line: int | None = None
    severity: Severity
    message: str


@dataclass
class Sample:
    """One training sample.

    Chat-like formats fill `messages` (role/content dicts; the final message is the assistant answer that is
    trained); the column format fills `text`. `group` is the thread root id (or the row id) so that
    train/eval splits never cut a thread; `row` is the 1-based data row the sample comes from.
    """

    messages: list[dict] | None = None
    text: str | None = None
    group: str = ""
    row: int = 0

    def message_count(self) -> int:
        """How many messages the sample renders (0 for a text sample), without building a list."""
        return len(self.messages or ())


class Turns:
    """A conversation as a chain of shared prefixes: this node's messages follow its parent's.

    A thread of N rows has N samples whose histories overlap; each row adds one node holding only its own
    turn, so the file costs memory linear in its rows. A sample's message list is built when it is read
    (and dropped after use), keeping at most `keep` messages from the end.
    """

    __slots__ = ("parent", "own", "length")

    def __init__(self, parent: Turns | None, own: tuple[dict, ...]):
        self.parent = parent
        self.own = own
        self.length = (parent.length if parent is not None else 0) + len(own)

    def messages(self, keep: int | None = None) -> list[dict]:
        parts: list[tuple[dict, ...]] = []
        count, node = 0, self
        while node is not None and (keep is None or count < keep):
            parts.append(node.own)
            count += len(node.own)
            node = node.parent
        out = [m for part in reversed(parts) for m in part]
        return out[-keep:] if keep is not None and len(out) > keep else out


class ThreadSample(Sample):
    """A chat sample whose `messages` are built on access from shared `Turns` (system message first)."""

    def __init__(self, turns: Turns, system: str, group: str, row: int, keep: int | None = None):
        self.turns, self.system, self.keep = turns, system, keep
        self.text, self.group, self.row = None, group, row

    @property
    def messages(self) -> list[dict]:  # type: ignore[override]
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns.messages(self.keep)

    def message_count(self) -> int:
        length = self.turns.length if self.keep is None else min(self.turns.length, self.keep)
        return length + bool(self.system)


@dataclass
class LoadedDataset:
    """A dataset file read into samples. `format` is the detected (or forced) format; `render_mode` is how
    its samples render (`column`, `chat` or `dialogplus`)."""

    format: str
    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0
    render_mode: str = "chat"

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]
