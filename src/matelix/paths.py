"""Confinement of user-given paths: every file or folder a user names must resolve inside an allowed root.

Symlinks are resolved before the check, so a link pointing outside the root is refused too.
"""

from __future__ import annotations

from pathlib import Path

from matelix.texts import tr

MAX_NAME_LENGTH = 255
MAX_PATH_LENGTH = 1024


class PathRefused(ValueError):
    """A user-given path that is malformed or escapes the allowed roots."""


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def too_long(user_path: str) -> bool:
    """Over the file system's limits, which count bytes: 255 per name, here 1024 for the whole path."""
    return _nbytes(user_path) > MAX_PATH_LENGTH or any(_nbytes(p) > MAX_NAME_LENGTH for p in Path(user_path).parts)


def confine(user_path: str, roots: list[Path], *, base: Path | None = None) -> Path:
    """Resolve `user_path` (relative to `base`, default the first root) and return it if inside a root.

    Raises PathRefused for NUL bytes, over-long names, and anything that resolves outside `roots`.
    """
    if not isinstance(user_path, str) or not user_path.strip():
        raise PathRefused(tr("path is empty"))
    if "\x00" in user_path:
        raise PathRefused(tr("path contains a NUL byte"))
    if too_long(user_path):
        raise PathRefused(tr("path is too long"))
    base = base or roots[0]
    candidate = Path(user_path)
    if not candidate.is_absolute():
        candidate = base / candidate
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError) as exc:
        raise PathRefused(tr("path cannot be resolved: {reason}", reason=exc)) from exc
    for root in roots:
        if resolved == root.resolve() or resolved.is_relative_to(root.resolve()):
            return resolved
    raise PathRefused(tr("path {path!r} is outside the allowed folders", path=user_path))


def relative_to_home(path: Path, home: Path) -> str:
    """The user-facing name of a path under home (never an absolute server path)."""
    try:
        return path.resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        return path.name
