"""What lies under home: dataset files, local models and training runs (read from disk every call)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from matelix.data.formats import DATASET_SUFFIXES, detect_format_safe
from matelix.paths import confine, relative_to_home, too_long
from matelix.settings import Settings
from matelix.texts import tr

MODEL_MARKERS = ("config.json", "adapter_config.json")
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LOCAL_PREFIXES = ("models/", "training_outputs/", "datasets/")


class ModelNotFound(LookupError):
    """No model under that name."""


class ModelRefused(ValueError):
    """A model reference or device the settings do not allow; `param` names the field."""

    def __init__(self, message: str, param: str = "model_dir"):
        super().__init__(message)
        self.param = param


def read_json(path: Path) -> dict:
    """A JSON object from disk, or {} when missing or corrupt (a damaged file never breaks a listing)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _inside(path: Path, root: Path) -> bool:
    """False for a symlink (or a path through one) that leads out of `root`: never listed, never served."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def list_datasets(settings: Settings) -> list[dict]:
    root = settings.datasets_dir
    if not root.is_dir():
        return []
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in DATASET_SUFFIXES
                       and _inside(p, root)):
        out.append({"name": path.relative_to(root).as_posix(), "path": relative_to_home(path, settings.home),
                    "size_bytes": path.stat().st_size, "format": detect_format_safe(path)})
    return out


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in MODEL_MARKERS)


def resolve_model_ref(ref: str, settings: Settings) -> Path | str:
    """A user's model reference → a local model folder (Path) or a hub repo id (str).

    Tried in order: a path relative to home (`models/x`, `training_outputs/run`), a run id (folder under
    `training_outputs/`), a folder name under `models/`, an absolute path inside those two folders — all
    confined with `paths.confine` (symlinks resolved) — then a hub id `owner/name` when not offline.
    Raises PathRefused (escapes the folders), ModelNotFound (404), ModelRefused (hub id while offline).
    Training, dataset validation and inference all resolve model names here, so they agree.
    """
    ref = ref.strip()
    roots = [settings.outputs_dir, settings.models_dir]
    # An explicit path, or a name the file system cannot even look up (NUL, over-long), goes straight to
    # confine(), which says why it is refused.
    explicit = (ref.startswith(("/", ".", "~")) or "\\" in ref or ".." in Path(ref).parts or "\x00" in ref
                or too_long(ref))
    for base in [settings.home] if explicit else [settings.home, *roots]:
        candidate = Path(ref) if Path(ref).is_absolute() else base / ref
        if explicit or candidate.exists():
            path = confine(ref, roots, base=base)
            if is_model_dir(path):
                return path
            raise ModelNotFound(tr("{ref!r} is not a model folder (no config.json or adapter_config.json)", ref=ref))
    if HUB_REPO_ID.match(ref) and not ref.startswith(LOCAL_PREFIXES):
        if settings.offline:
            raise ModelRefused(tr("model {ref!r} is not a local model, and hub downloads are off (MATELIX_OFFLINE)",
                                  ref=ref))
        return ref
    raise ModelNotFound(tr("no model named {ref!r} (not a run id, nor a folder under models/ or training_outputs/)",
                           ref=ref))


def list_local_models(settings: Settings) -> list[dict]:
    root = settings.models_dir
    if not root.is_dir():
        return []
    return [{"id": relative_to_home(p, settings.home), "name": p.name, "kind": "local",
             "path": relative_to_home(p, settings.home), "created": int(p.stat().st_mtime)}
            for p in sorted(root.iterdir()) if is_model_dir(p) and _inside(p, root)]


def list_run_dirs(settings: Settings) -> list[Path]:
    root = settings.outputs_dir
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _inside(p, root)), key=lambda p: p.name)


def list_finished_run_models(settings: Settings) -> list[dict]:
    return [{"id": p.name, "name": p.name, "kind": "run", "path": relative_to_home(p, settings.home),
             "created": int(p.stat().st_mtime)}
            for p in list_run_dirs(settings) if is_model_dir(p)]


def list_models(settings: Settings) -> list[dict]:
    """Local models, finished runs, and runs' complete checkpoints (`run@checkpoint-N`, `run@latest`)."""
    # Imported here: checkpoint_refs reads run folders through training.rundir, which imports this module.
    from matelix.checkpoint_refs import list_checkpoint_models

    return list_local_models(settings) + list_finished_run_models(settings) + list_checkpoint_models(settings)
