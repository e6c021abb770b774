"""Training runs on disk."""

from fastapi import APIRouter

from matelix import catalog
from matelix.server.deps import SettingsDep

router = APIRouter(tags=["training"])


@router.get("/trainings")
def trainings(settings: SettingsDep) -> list[dict]:
    """Run folders under `training_outputs/` with their `train_config.json` (empty list when none)."""
    return [{"run_id": p.name, "config": catalog.read_json(p / "train_config.json"),
             "status": catalog.read_json(p / "status.json")}
            for p in catalog.list_run_dirs(settings) if (p / "train_config.json").is_file()]
