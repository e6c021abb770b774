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
