"""What is on disk under home: datasets, local models, training runs."""

from fastapi import APIRouter

from matelix import catalog
from matelix.server.deps import SettingsDep

router = APIRouter(tags=["catalog"])


@router.get("/available_datasets")
def available_datasets(settings: SettingsDep) -> list[dict]:
    """Dataset files under `datasets/` with size and detected format."""
    return catalog.list_datasets(settings)


@router.get("/available_models")
def available_models(settings: SettingsDep) -> list[dict]:
    """Local models under `models/` and finished training runs."""
    return catalog.list_models(settings)
