"""The run directory: the single source of truth of a training run.

    training_outputs/<model>_<YYYY-MM-DD_HH-MM-SS>/
        train_config.json   the TrainConfig, as validated
        status.json         state, progress, worker pid + start time (replaced atomically)
        metrics.jsonl       one JSON object per logging step (append-only)
        training.log        everything the worker prints; line N has id N
        livepreview.json    current batch decoded + the latest generated sample
        worker.json         pid + start time of the spawned worker (the spawner's; status.json is the worker's)
        stop_requested      present while a graceful stop is asked for
        .space-reserve      space set aside, freed on a full disk to write the final status
        checkpoint-*/       Trainer checkpoints; the final model + tokenizer sit in the folder itself
        .final-tmp/         the final model while it is being saved (moved into the folder when whole)

Only the worker writes status.json while it is alive; the server writes it before spawning and after the
worker has gone (the pid of a worker it spawned goes to worker.json, and a kill is recorded once the worker is
dead), so there is never more than one writer at a time.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import psutil

from matelix.catalog import is_model_dir, read_json
from matelix.runstates import ACTIVE_STATES, FINAL_STATES, RESUMABLE_STATES, STATES  # noqa: F401 (run folders speak it)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                 "pytorch_model.bin", "adapter_model.bin")
# The final save goes here first; a leftover one is a save that was cut off (never a checkpoint or a model).
FINAL_SAVE_TMP = ".final-tmp"
# How many log lines a failed or dead run keeps in its status.json error.
ERROR_TAIL_LINES = 20
# Tolerance when comparing a recorded process start time with the live one (float rounding only).
START_TIME_SLACK_S = 1.0
# Space set aside in each run folder at start: on a full disk it is freed so the final status (the failure and
# its reason) can still be written. Many times a status.json with its error and last log lines.
SPACE_RESERVE = ".space-reserve"
SPACE_RESERVE_BYTES = 256 * 1024
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temp file in the same folder, then rename over `path` (readers never see half)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, ValueError):
        return None


def process_alive(pid: int | None, started: float | None) -> bool:
    """True when `pid` runs and is the same process that was recorded (not a recycled pid or a zombie)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(int(pid))
            return False
        return started is None or abs(proc.create_time() - float(started)) < START_TIME_SLACK_S
    except (psutil.Error, ValueError):
        return False


def _reap(pid: int) -> None:
    """Collect a finished child of this process (a server in the same process may have spawned it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class RunDir:
    """Typed access to the files of one run folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "train_config.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "training.log"

    @property
    def preview_path(self) -> Path:
        return self.path / "livepreview.json"

    @property
    def stop_path(self) -> Path:
        return self.path / "stop_requested"

    @property
    def reserve_path(self) -> Path:
        return self.path / SPACE_RESERVE

    @property
    def worker_path(self) -> Path:
        return self.path / "worker.json"

    def write_worker(self, pid: int, started: float | None) -> None:
        """The spawned worker's pid and start time, written by the spawner (status.json is the worker's)."""
        write_json_atomic(self.worker_path, {"pid": pid, "pid_started": started})

    def worker_pid(self, status: dict) -> tuple[int | None, float | None]:
        """The worker's pid and start time: from status.json once the worker wrote them, else worker.json."""
        if status.get("pid"):
            return status.get("pid"), status.get("pid_started")
        spawned = read_json(self.worker_path)
        return spawned.get("pid"), spawned.get("pid_started")

    def read_config(self):
        from matelix.training.config import TrainConfig

        return TrainConfig.model_validate_json(self.config_path.read_text(encoding="utf-8"))

    def write_config(self, config) -> None:
        write_json_atomic(self.config_path, config.model_dump(mode="json"))

    def read_status(self) -> dict:
        return read_json(self.status_path)

    def update_status(self, **fields) -> dict:
        """Merge `fields` into status.json (atomic replace) and return the new status. On a full disk the
        run's space reserve is given up for a final state, so the end of the run (and why) is still written."""
        status = self.read_status()
        status.update(fields)
        status["updated_at"] = time.time()
        try:
            write_json_atomic(self.status_path, status)
        except OSError as exc:
            if not is_disk_full(exc) or status.get("state") not in FINAL_STATES or not self.release_space():
                raise
            write_json_atomic(self.status_path, status)
        return status

    def reserve_space(self) -> None:
        """Set SPACE_RESERVE_BYTES aside in the run folder (written, not a sparse file: file systems count
        written data against free space at once, so no fsync is needed)."""
        self.reserve_path.write_bytes(b"\0" * SPACE_RESERVE_BYTES)

    def release_space(self) -> bool:
        """Delete the space reserve; False when there was none left to give."""
        try:
            self.reserve_path.unlink()
        except OSError:
            return False
        return True

    def append_metric(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self.metrics_path.open("a+b") as fh:
            if fh.seek(0, os.SEEK_END) > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line torn by a failed write stays alone (and is skipped)
                    line = b"\n" + line
            fh.write(line)

    def read_metrics(self) -> list[dict]:
        """Every complete metrics line (a line being written right now is skipped)."""
        try:
            text = self.metrics_path.read_text(encoding="utf-8")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metrics of steps after `after_step` (they are redone when a run resumes from a checkpoint)."""
        kept = [m for m in self.read_metrics() if int(m.get("step", 0)) <= after_step]
        fd, tmp = tempfile.mkstemp(prefix=".metrics.", dir=self.path)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in kept)
        os.replace(tmp, self.metrics_path)

    def request_stop(self) -> None:
        self.stop_path.touch()

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def clear_stop(self) -> None:
        self.stop_path.unlink(missing_ok=True)

    def write_preview(self, data: dict) -> None:
        write_json_atomic(self.preview_path, data)

    def read_preview(self) -> dict:
        return read_json(self.preview_path)

    def checkpoints(self) -> list[Path]:
        """Checkpoint folders, oldest step first."""
        found = [(int(m.group(1)), p) for p in self.path.glob("checkpoint-*")
                 if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
        return [p for _, p in sorted(found)]

    def last_complete_checkpoint(self) -> Path | None:
        """The newest checkpoint that was fully written (the Trainer writes trainer_state.json last)."""
        for ckpt in reversed(self.checkpoints()):
            if is_complete_checkpoint(ckpt):
                return ckpt
        return None

    def has_model(self) -> bool:
        return is_model_dir(self.path)

    def tail_log(self, n: int = 20) -> list[str]:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                data = fh.read()
        except OSError:
            return []
        return [_clean(line) for line in data.splitlines()[-n:]]


def is_complete_checkpoint(path: Path) -> bool:
    """The Trainer writes weights, optimizer, scheduler and RNG state first and trainer_state.json last (not
    atomically), so a checkpoint is complete only when trainer_state.json parses and names its step."""
    if not any((path / w).is_file() for w in MODEL_WEIGHTS):
        return False
    state = read_json(path / "trainer_state.json")
    return isinstance(state.get("global_step"), int)


def checkpoint_step(path: Path) -> int:
    m = CHECKPOINT_RE.match(path.name)
    return int(m.group(1)) if m else 0


def _clean(raw: bytes) -> str:
    # Progress bars redraw with carriage returns; the last redraw is what a terminal would show.
    return raw.decode("utf-8", errors="replace").rstrip("\r\n").rsplit("\r", 1)[-1]


class LogReader:
    """Serves training.log by line id (1-based) without rereading the file: it remembers line offsets.

    Only complete lines (ending in a newline) get an id, so a line being written is never served half
    and then again in full.
    """

    def __init__(self, path: Path):
        self.path = path
        self._starts: list[int] = []  # byte offset of each complete line
        self._end = 0  # byte offset just after the last complete line
        self._inode: int | None = None
        # One reader serves /logs and every WebSocket follower from threadpool threads; two indexing at
        # once would append the same lines twice and shift every later id.
        self._lock = threading.Lock()

    def _index(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            self._starts, self._end, self._inode = [], 0, None
            return
        if st.st_ino != self._inode or st.st_size < self._end:
            self._starts, self._end, self._inode = [], 0, st.st_ino
        if st.st_size == self._end:
            return
        with self.path.open("rb") as fh:
            fh.seek(self._end)
            data = fh.read(st.st_size - self._end)
        pos = 0
        while (nl := data.find(b"\n", pos)) != -1:
            self._starts.append(self._end + pos)
            pos = nl + 1
        self._end += pos

    def read(self, since: int = 0, limit: int = 1000) -> list[dict]:
        """Lines with id > since, at most `limit`, as {"id", "line"}."""
        with self._lock:
            self._index()
            since = max(0, since)
            ids = range(since + 1, min(len(self._starts), since + limit) + 1)
            if not ids:
                return []
            start = self._starts[ids[0] - 1]
            stop = self._starts[ids[-1]] if ids[-1] < len(self._starts) else self._end
            with self.path.open("rb") as fh:
                fh.seek(start)
                chunk = fh.read(stop - start)
        return [{"id": i, "line": _clean(raw)} for i, raw in zip(ids, chunk.split(b"\n"), strict=False)]


class MetricsReader:
    """Follows metrics.jsonl: each call parses only the complete lines written since the previous call.

    Records are numbered from 0 in file order (torn lines are skipped and get no number). A rewritten file
    (metrics truncated for a resume) is read again from its start.
    """

    def __init__(self, path: Path):
        self.path = path
        self._end = 0  # byte offset just after the last complete line read
        self._inode: int | None = None
        self._count = 0  # records read so far

    def read_new(self) -> tuple[int, list[dict]]:
        """(number of the first record returned, the records appended since the last call)."""
        try:
            st = self.path.stat()
        except OSError:
            self._end, self._inode, self._count = 0, None, 0
            return 0, []
        if st.st_ino != self._inode or st.st_size < self._end:
            self._end, self._inode, self._count = 0, st.st_ino, 0
        first = self._count
        if st.st_size == self._end:
            return first, []
        with self.path.open("rb") as fh:
            fh.seek(self._end)
            data = fh.read(st.st_size - self._end)
        complete = data.rfind(b"\n") + 1  # a line being written is left for the next call
        self._end += complete
        records = []
        for line in data[:complete].splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        self._count += len(records)
        return first, records
