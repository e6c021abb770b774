"""Server side of training: start, watch, stop, resume and delete runs; re-attach after a restart.

Nothing here is kept that cannot be rebuilt from the run folders: a worker is recognised by the pid and
process start time in its status.json, so a restarted server picks up a live worker, and a run whose
worker is gone without writing a final state is marked `interrupted` (or `killed` when the server killed
it after the stop timeout). Workers run in their own session, so they outlive the server and a Ctrl-C in
the terminal of `matelix train` reaches only the CLI, which turns it into a graceful stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from matelix.paths import PathRefused, confine, relative_to_home
from matelix.settings import Settings
from matelix.texts import kept, said, tr
from matelix.training.config import TrainConfig
from matelix.training.preflight import (
    RunRejected,
    describe_resolved,
    new_run_dir,
    resolve_run,
    resumable,
)
from matelix.training.rundir import (
    ACTIVE_STATES,
    ERROR_TAIL_LINES,
    FINAL_SAVE_TMP,
    FINAL_STATES,
    LogReader,
    RunDir,
    process_alive,
    process_start_time,
)

STATUS_FIELDS = ("step", "total_steps", "epoch", "progress", "loss", "eval_loss", "learning_rate", "grad_norm",
                 "tokens_per_second", "tokens_seen", "eta_seconds", "phase",
                 "final_from_step", "best_checkpoint")  # which step the final model is (early stopping)
KILL_WAIT_S = 10.0
SPAWN_GRACE_S = 30.0  # a `queued` run without a worker pid after this long was never spawned (server died)


def worker_command(rundir: RunDir, config: TrainConfig, resume: Path | None = None) -> list[str]:
    """The worker's command line: the worker itself, or torchrun starting `nproc` of them on this node."""
    worker = ["-m", "matelix.training.worker", str(rundir.path)] + (["--resume", str(resume)] if resume else [])
    if config.nnodes > 1:
        # torchrun's static rendezvous: `--node-rank` decides the global ranks, so node 0 (the server's run
        # folder) holds rank 0. The c10d backend ignores --node-rank and orders nodes by host name and pid,
        # which could put rank 0, and with it the checkpoints and the final model, on a joining machine.
        launcher = [f"--nnodes={config.nnodes}", f"--node-rank={config.node_rank}",
                    f"--master-addr={config.master_addr}", f"--master-port={config.master_port}",
                    "--rdzv-backend=static", f"--rdzv-conf=timeout={config.node_timeout_s}", "--max-restarts=0"]
    elif config.nproc > 1:
        launcher = ["--standalone"]
    else:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", *launcher, f"--nproc-per-node={config.nproc}", *worker]


def worker_env(settings: Settings, nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    # PYTHONSAFEPATH: the working directory is home, whose datasets/ folder would shadow the `datasets` package.
    env.update({"TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1", "PYTHONSAFEPATH": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "MATELIX_HOME": str(settings.home),
                "MATELIX_OFFLINE": str(settings.offline).lower(),
                "MATELIX_TRUST_REMOTE_CODE": str(settings.trust_remote_code).lower()})
    if settings.offline:
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if nproc > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    return env


class RunManager:
    """The training runs under one home, as seen by one server (or one `matelix train`)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.RLock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._killed: set[str] = set()  # runs killed after their stop timeout, until settled
        self._configs: dict[str, tuple[tuple, dict | None]] = {}  # run id -> (file identity, config as JSON)
        self._logs: dict[str, LogReader] = {}
        self.supervise()  # re-attach to live workers, settle dead ones

    # -- lookup ----------------------------------------------------------------------------------------

    def runs(self) -> list[RunDir]:
        root = self.settings.outputs_dir
        if not root.is_dir():
            return []
        real_root = root.resolve()
        # A symlink leading out of training_outputs/ is not a run of this lab (never listed, never deleted).
        return [RunDir(p) for p in sorted(root.iterdir()) if p.is_dir() and (p / "train_config.json").is_file()
                and p.resolve().is_relative_to(real_root)]

    def rundir(self, run_id: str) -> RunDir:
        if "/" in run_id or "\\" in run_id:
            raise RunRejected("invalid", tr("run_id {run!r} must be a run folder name", run=run_id), param="run_id")
        try:
            path = confine(run_id, [self.settings.outputs_dir], base=self.settings.outputs_dir)
        except PathRefused as exc:
            raise RunRejected("invalid", f"run_id: {exc}", param="run_id", code="path_refused") from exc
        if path == self.settings.outputs_dir.resolve() or not (path / "train_config.json").is_file():
            raise RunRejected("not_found", tr("no training run {run!r}", run=run_id), param="run_id",
                              code="run_not_found")
        return RunDir(path)

    def alive(self, rundir: RunDir, status: dict | None = None) -> bool:
        status = rundir.read_status() if status is None else status
        pid, started = rundir.worker_pid(status)
        proc = self._procs.get(rundir.run_id)
        if proc is not None:
            if proc.poll() is None or pid == proc.pid:
                return proc.poll() is None
            self._procs.pop(rundir.run_id, None)  # ours ended; another server may be (re)spawning the run
        if not pid:  # being spawned (by this or another server): `queued`, no pid yet, for a moment only
            return status.get("state") == "queued" and time.time() - (status.get("updated_at") or 0) < SPAWN_GRACE_S
        return process_alive(pid, started)

    def active(self) -> RunDir | None:
        for rundir in self.runs():
            status = self.observe(rundir)
            if status.get("state") in ACTIVE_STATES and self.alive(rundir, status):
                return rundir
        return None

    def current(self, run_id: str | None = None) -> RunDir | None:
        """The named run, else the active run, else the most recently started one."""
        if run_id:
            return self.rundir(run_id)
        runs = self.runs()
        if not runs:
            return None
        active = self.active()
        if active is not None:
            return active
        return max(runs, key=lambda r: (r.read_status().get("session_started_at")
                                        or r.read_status().get("created_at") or 0, r.run_id))

    # -- state upkeep: reads never write; `settle` (the supervisor, start/stop/resume/kill/delete) does ------

    def observe(self, rundir: RunDir, status: dict | None = None) -> dict:
        """The run's status as it stands; a run whose worker is gone is shown settled (`interrupted` or
        `killed`) without writing anything — `settle` writes it."""
        status = rundir.read_status() if status is None else status
        if status.get("state") not in ACTIVE_STATES or self.alive(rundir, status):
            return status
        return {**status, **self._settled(rundir, status)}

    def _settled(self, rundir: RunDir, status: dict) -> dict:
        proc = self._procs.get(rundir.run_id)
        code = proc.returncode if proc is not None else None
        killed = bool(status.get("killed")) or rundir.run_id in self._killed
        # Kept with its template: the status is written now and read later, in each reader's language.
        if killed:
            error = kept("worker did not stop within {seconds:g} s and was killed",
                         seconds=self.settings.stop_timeout_s)
        elif code is not None:
            error = kept("worker ended without a final state (exit code {code})", code=code)
        else:
            error = kept("worker ended without a final state")
        return {"state": "killed" if killed else "interrupted", "phase": None,
                "finished_at": status.get("finished_at") or time.time(),
                "error": {**error, "last_lines": rundir.tail_log(ERROR_TAIL_LINES)}}

    def supervise(self) -> None:
        """Settle every run in an active state: the server's supervisor task calls this every second."""
        for rundir in self.runs():
            if rundir.read_status().get("state") in ACTIVE_STATES:
                self.settle(rundir)

    def settle(self, rundir: RunDir) -> dict:
        """Kill a worker that overran its stop timeout, and write the end of a run whose worker is gone
        (status.json has one writer at a time: the worker while it lives, then this). Returns the status."""
        status = rundir.read_status()
        if status.get("state") not in ACTIVE_STATES:
            return status
        alive = self.alive(rundir, status)
        if alive and rundir.stop_requested():
            waited = time.time() - rundir.stop_path.stat().st_mtime if rundir.stop_path.exists() else 0
            if waited > self.settings.stop_timeout_s:
                self._kill(rundir, status)
                alive = False
        if alive:
            return status
        with self._lock:
            status = rundir.read_status()
            if status.get("state") not in ACTIVE_STATES or self.alive(rundir, status):
                return status
            settled = self._settled(rundir, status)
            self._procs.pop(rundir.run_id, None)
            self._killed.discard(rundir.run_id)
            try:
                rundir.clear_stop()
                return rundir.update_status(**settled)
            except OSError:
                # A full (or read-only) disk: the run is still shown settled, and written when it can be.
                return {**status, **settled}

    def _kill(self, rundir: RunDir, status: dict) -> None:
        """SIGKILL the worker's process group and wait for it; `settle` then writes `killed` (the worker can
        no longer write, so the flag cannot be lost to a progress update racing it)."""
        pid, started = rundir.worker_pid(status)
        proc = self._procs.get(rundir.run_id)
        self._killed.add(rundir.run_id)
        workers = worker_processes(pid)
        try:
            os.killpg(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, TypeError, ValueError):
            if proc is not None:
                proc.kill()
        for worker in workers:  # torchrun starts each worker in a session of its own: killpg misses them
            with contextlib.suppress(psutil.Error):
                worker.kill()
        if proc is not None:
            try:
                proc.wait(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        else:
            deadline = time.time() + KILL_WAIT_S
            while process_alive(pid, started) and time.time() < deadline:
                time.sleep(0.05)

    # -- actions ---------------------------------------------------------------------------------------

    def _ensure_idle(self) -> None:
        active = self.active()
        if active is not None:
            raise RunRejected("conflict", tr("run {run!r} is active; stop it first (POST /stop)", run=active.run_id),
                              code="run_active")

    def _spawn(self, rundir: RunDir, config: TrainConfig, resume: Path | None) -> subprocess.Popen:
        with rundir.log_path.open("ab") as log_fh:
            proc = subprocess.Popen(worker_command(rundir, config, resume), stdout=log_fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                    env=worker_env(self.settings, config.nproc), cwd=str(self.settings.home))
        self._procs[rundir.run_id] = proc
        rundir.write_worker(proc.pid, process_start_time(proc.pid))
        return proc

    def start(self, config: TrainConfig) -> RunDir:
        """Validate, create the run folder and spawn its worker; RunRejected (4xx) leaves nothing on disk."""
        self._ensure_idle()
        resolved = resolve_run(config, self.settings)
        with self._lock:
            self._ensure_idle()
            # A joining node keeps its own record of its part (log, status) beside node 0's run name.
            rundir = new_run_dir(resolved.model_name + (f"_node{config.node_rank}" if config.node_rank else ""),
                                 self.settings)
            try:
                rundir.reserve_space()
                rundir.write_config(config)
                now = time.time()
                rundir.update_status(run_id=rundir.run_id, state="queued", created_at=now, session_started_at=now,
                                     elapsed_previous=0.0, train_mode=config.train_mode,
                                     **describe_resolved(resolved, self.settings))
                self._spawn(rundir, config, None)
            except BaseException:
                shutil.rmtree(rundir.path, ignore_errors=True)
                raise
        return rundir

    def resume(self, run_id: str) -> tuple[RunDir, Path]:
        """Continue a stopped/failed/interrupted run from its last complete checkpoint, in its own folder."""
        rundir = self.rundir(run_id)
        self.settle(rundir)
        with self._lock:
            self._ensure_idle()
            ckpt = resumable(rundir)
            config = rundir.read_config()
            resolve_run(config, self.settings, check=False)
            status = rundir.read_status()
            rundir.clear_stop()
            shutil.rmtree(rundir.path / FINAL_SAVE_TMP, ignore_errors=True)  # a final save that was cut off
            rundir.worker_path.unlink(missing_ok=True)  # the previous session's worker
            rundir.reserve_space()
            now = time.time()
            rundir.update_status(state="queued", phase=None, error=None, killed=False, finished_at=None,
                                 elapsed_previous=elapsed_seconds(status, now), session_started_at=now,
                                 resumed_from=ckpt.name, pid=None, pid_started=None)
            self._spawn(rundir, config, ckpt)
        return rundir, ckpt

    def stop(self, run_id: str | None = None) -> RunDir:
        """Ask the active run to stop gracefully; `settle` kills it after settings.stop_timeout_s."""
        rundir = self.rundir(run_id) if run_id else self.active()
        if rundir is None or not self.alive(rundir):
            raise RunRejected("conflict", tr("no training run is active"), code="no_active_run")
        # A repeated stop does not restart the grace period; the supervisor kills the worker once it is over
        # (no timer thread per stop).
        if not rundir.stop_requested():
            rundir.request_stop()
        return rundir

    def kill(self, run_id: str) -> None:
        """End a worker now (it is marked `killed`); for a stop that must not wait."""
        rundir = self.rundir(run_id)
        status = rundir.read_status()
        if self.alive(rundir, status):
            self._kill(rundir, status)
        self.settle(rundir)

    def delete(self, run_id: str) -> None:
        # Under the lock, so a resume of the same run cannot spawn its worker between the check and the rmtree.
        with self._lock:
            rundir = self.rundir(run_id)
            status = self.settle(rundir)
            if self.alive(rundir, status):
                raise RunRejected("conflict", tr("run {run!r} is running; stop it before deleting", run=run_id),
                                  code="run_active")
            shutil.rmtree(rundir.path)
            self._logs.pop(run_id, None)
            self._procs.pop(run_id, None)

    # -- views -----------------------------------------------------------------------------------------

    def log_reader(self, rundir: RunDir) -> LogReader:
        reader = self._logs.get(rundir.run_id)
        if reader is None:  # setdefault: two threads asking at once end up sharing one reader
            reader = self._logs.setdefault(rundir.run_id, LogReader(rundir.log_path))
        return reader

    def status_view(self, rundir: RunDir | None) -> dict:
        """The `/status` body for a run (or an idle body when there is none)."""
        if rundir is None:
            return {"running": False, "state": None, "run_id": None, **dict.fromkeys(STATUS_FIELDS),
                    "elapsed_seconds": None, "save_dir": None, "config": None, "error": None}
        status = self.observe(rundir)
        running = self.alive(rundir, status)
        state = status.get("state")
        if running and state in ("starting", "running") and rundir.stop_requested():
            state = "stopping"
        config = self.config_json(rundir)
        return {"running": running, "state": state, "run_id": rundir.run_id,
                **{k: status.get(k) for k in STATUS_FIELDS},
                "elapsed_seconds": elapsed_seconds(status, time.time()),
                "save_dir": relative_to_home(rundir.path, self.settings.home), "config": config,
                "error": said(status.get("error")) if state in FINAL_STATES else None,
                "model": status.get("model"), "dataset": status.get("dataset"),
                "train_mode": status.get("train_mode"), "resumed_from": status.get("resumed_from"),
                "ngrams": status.get("ngrams")}

    def config_json(self, rundir: RunDir) -> dict | None:
        """train_config.json validated and dumped as JSON, re-read only when the file changes."""
        try:
            st = rundir.config_path.stat()
        except OSError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._configs.get(rundir.run_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            config = rundir.read_config().model_dump(mode="json")
        except (OSError, ValueError):
            config = None
        self._configs[rundir.run_id] = (key, config)
        return config

    def summary(self, rundir: RunDir) -> dict:
        """One line of `/trainings`."""
        view = self.status_view(rundir)
        status = rundir.read_status()
        return {"run_id": rundir.run_id, "state": view["state"], "running": view["running"],
                "model": view["model"], "dataset": view["dataset"], "train_mode": view["train_mode"],
                "final_loss": status.get("loss"), "eval_loss": status.get("eval_loss"),
                "duration_seconds": view["elapsed_seconds"], "step": view["step"],
                "total_steps": view["total_steps"], "created_at": status.get("created_at"),
                "finished_at": status.get("finished_at"), "save_dir": view["save_dir"],
                "has_model": rundir.has_model(), "config": view["config"]}


def worker_processes(pid: int | None) -> list[psutil.Process]:
    """Every process below the launcher `pid` (torchrun's workers), found before anything is killed."""
    try:
        return psutil.Process(int(pid)).children(recursive=True)
    except (psutil.Error, TypeError, ValueError):
        return []


def elapsed_seconds(status: dict, now: float) -> float | None:
    start = status.get("session_started_at")
    if start is None:
        return None
    end = status.get("finished_at") or now
    return round(float(status.get("elapsed_previous") or 0.0) + max(0.0, end - start), 3)
