"""Stored lm-eval results: one JSON file per evaluation under `<home>/evaluations/<model>/`, where `<model>`
is the evaluated model's home-relative name made safe for a folder (`models/x` -> `models__x`)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from matelix.catalog import read_json
from matelix.settings import Settings
from matelix.training.rundir import write_json_atomic


def evaluations_dir(settings: Settings) -> Path:
    return settings.home / "evaluations"


def model_folder_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "__", model.strip("/")).strip(".") or "model"


def save_result(settings: Settings, record: dict) -> dict:
    """Write `record` (atomically) with an id `<model folder>/<time>` and return it."""
    folder = evaluations_dir(settings) / model_folder_name(record["model"])
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    name, n = stamp, 1
    while (folder / f"{name}.json").exists():
        n += 1
        name = f"{stamp}-{n}"
    record = {"id": f"{folder.name}/{name}", **record}
    write_json_atomic(folder / f"{name}.json", record)
    return record


def list_results(settings: Settings, model: str | None = None) -> list[dict]:
    """Every stored result (of one model when given), newest first."""
    root = evaluations_dir(settings)
    folders = [root / model_folder_name(model)] if model else sorted(p for p in root.glob("*") if p.is_dir())
    records = [r for folder in folders for path in folder.glob("*.json") if (r := read_json(path))]
    return sorted(records, key=lambda r: r.get("finished_at") or 0, reverse=True)


def latest_by_model(settings: Settings) -> dict[str, dict[str, dict]]:
    """{model: {task: metrics}} from the newest result of each (model, task): the comparison table."""
    table: dict[str, dict[str, dict]] = {}
    for record in list_results(settings):
        row = table.setdefault(record["model"], {})
        for task, metrics in record.get("results", {}).items():
            row.setdefault(task, {**metrics, "backend": record.get("backend"), "id": record.get("id")})
    return table
