"""What lies under home: dataset files, local models and training runs (read from disk every call)."""

from __future__ import annotations

import json
from pathlib import Path

from matelix.data.formats import DATASET_SUFFIXES, detect_format_safe
from matelix.paths import relative_to_home
from matelix.settings import Settings

MODEL_MARKERS = ("config.json", "adapter_config.json")


def read_json(path: Path) -> dict | None:
    """A JSON object from disk, or None when missing or corrupt (a damaged file never breaks a listing)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
    return list_local_models(settings) + list_finished_run_models(settings)
