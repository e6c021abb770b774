"""Named training presets: a set of `TrainConfig` values saved under `<home>/presets/<name>.json`.

A preset may hold any TrainConfig field (model and dataset included, or left to the form / the config
file); its values are checked as TrainConfig checks them, so a preset that loads is one a run accepts.
Used by the `/presets` routes (the dashboard's saved settings) and by `matelix train --preset NAME`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from matelix.paths import too_long
from matelix.texts import tr
from matelix.training.config import TrainConfig, canonical_names, describe
from matelix.training.preflight import RejectKind
from matelix.training.rundir import write_json_atomic

PRESETS_FOLDER = "presets"
NAME_PATTERN = re.compile(r"^[\w][\w .()+-]{0,63}$")
# Filled in only to check a preset that leaves the model or the dataset open; never stored.
_PLACEHOLDERS = {"model_dir": "models/placeholder", "csv_path": "placeholder.csv"}


class PresetError(ValueError):
    """A preset name or body a user got wrong (kind "invalid"), or a preset that does not exist ("not_found");
    the kinds of `preflight.RunRejected`."""

    def __init__(self, kind: RejectKind, message: str, param: str):
        super().__init__(message)
        self.kind, self.message, self.param = kind, message, param


def presets_dir(home: Path) -> Path:
    return Path(home) / PRESETS_FOLDER


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_PATTERN.match(name) or too_long(f"{name}.json"):
        raise PresetError("invalid", tr("name: {name!r} is not a preset name (1 to 64 letters, digits, spaces or "
                                        "._-+(), starting with a letter or digit)", name=name), "name")
    return name


def check_values(values: object) -> dict:
    """The preset's values as TrainConfig reads them (unknown fields and bad values raise PresetError)."""
    if not isinstance(values, dict):
        raise PresetError("invalid", tr("config: expected an object of TrainConfig fields"), "config")
    try:
        # resume_from names one run's checkpoint: settings to reuse never carry it.
        values = {key: value for key, value in canonical_names(values).items() if key != "resume_from"}
        config = TrainConfig.model_validate({**_PLACEHOLDERS, **values})
    except ValueError as exc:  # pydantic's ValidationError is one
        raise PresetError("invalid", f"config: {describe(exc)}", "config") from exc
    dumped = config.model_dump(mode="json")
    return {key: dumped[key] for key in values}


def list_presets(home: Path) -> list[dict]:
    folder = presets_dir(home)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stem.lower()):
        try:
            out.append(_read(path))
        except (OSError, ValueError):
            continue  # a file edited by hand into nonsense is skipped, not a 500
    return out


def _read(path: Path) -> dict:
    """A preset file, its values in today's field names (a preset saved with older names still loads)."""
    preset = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(preset, dict) and isinstance(preset.get("config"), dict):
        preset["config"] = canonical_names(preset["config"])
    return preset


def load_preset(home: Path, name: str) -> dict:
    path = presets_dir(home) / f"{check_name(name)}.json"
    try:
        return _read(path)
    except FileNotFoundError:
        raise PresetError("not_found", tr("name: no preset {name!r}", name=name), "name") from None
    except (OSError, ValueError) as exc:
        raise PresetError("invalid", tr("name: preset {name!r} cannot be read: {reason}", name=name, reason=exc),
                          "name") from exc


def save_preset(home: Path, name: str, values: object) -> dict:
    """Create or replace the preset `name` (written atomically); returns what was stored."""
    preset = {"name": check_name(name), "config": check_values(values)}
    folder = presets_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{preset['name']}.json", preset)
    return preset


def delete_preset(home: Path, name: str) -> None:
    path = presets_dir(home) / f"{check_name(name)}.json"
    try:
        path.unlink()
    except FileNotFoundError:
        raise PresetError("not_found", tr("name: no preset {name!r}", name=name), "name") from None
