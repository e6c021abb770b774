"""A folder as an uncompressed tar stream, produced while it is sent (an export can be gigabytes; nothing
is staged on disk or in memory). Model weights barely compress, so no compression is spent on them."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

BLOCK = tarfile.BLOCKSIZE  # 512
CHUNK = 1024 * 1024


def tar_stream(folder: Path, prefix: str) -> Iterator[bytes]:
    """Every regular file under `folder` as `prefix/relative/path` in a POSIX tar, then the end marker."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        info = tarfile.TarInfo(f"{prefix}/{path.relative_to(folder).as_posix()}")
        stat = path.stat()
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        sent = 0
        with path.open("rb") as fh:
            while sent < info.size and (chunk := fh.read(min(CHUNK, info.size - sent))):
                sent += len(chunk)
                yield chunk
        if sent < info.size:  # the file shrank while being sent: keep the archive well-formed
            yield bytes(info.size - sent)
        if info.size % BLOCK:
            yield bytes(BLOCK - info.size % BLOCK)
    yield bytes(2 * BLOCK)

