"""The states of a training run, as `status.json` names them: the vocabulary the training side writes and
the server, the model registry and the metrics read (a module both sides import, owned by neither)."""

from __future__ import annotations

STATES = ("queued", "starting", "running", "stopping", "completed", "stopped", "failed", "interrupted",
          "killed")
ACTIVE_STATES = frozenset({"queued", "starting", "running", "stopping"})
FINAL_STATES = frozenset({"completed", "stopped", "failed", "interrupted", "killed"})
RESUMABLE_STATES = frozenset({"stopped", "failed", "interrupted", "killed"})
