"""Named training presets (saved settings): list, read, create or replace, delete.

Stored under `<home>/presets/`; the same files `matelix train --preset NAME` reads.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from matelix.server.deps import SettingsDep
from matelix.server.errors import STATUS_BY_KIND, ApiError
from matelix.training import presets as store

router = APIRouter(tags=["presets"])


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="1 to 64 letters, digits, spaces or ._-+(), starting with a letter or digit.")
    config: dict[str, Any] = Field(..., description="TrainConfig fields to set (any subset; checked like /start).")


def _api_error(exc: store.PresetError) -> ApiError:
    return ApiError(STATUS_BY_KIND[exc.kind], exc.message, param=exc.param,
                    code="preset_not_found" if exc.kind == "not_found" else "invalid_preset")


@router.get("/presets")
def list_presets(settings: SettingsDep) -> list[Preset]:
    """Every saved preset, by name."""
    return [Preset(name=p.get("name", ""), config=p.get("config", {})) for p in store.list_presets(settings.home)
            if isinstance(p, dict)]


@router.get("/presets/{name}")
def get_preset(name: str, settings: SettingsDep) -> Preset:
    """One preset."""
    try:
        return Preset(**store.load_preset(settings.home, name))
    except store.PresetError as exc:
        raise _api_error(exc) from exc


@router.post("/presets", status_code=201)
def save_preset(body: Preset, settings: SettingsDep) -> Preset:
    """Save settings under a name (an existing preset of that name is replaced)."""
    try:
        return Preset(**store.save_preset(settings.home, body.name, body.config))
    except store.PresetError as exc:
        raise _api_error(exc) from exc


@router.delete("/presets/{name}")
def delete_preset(name: str, settings: SettingsDep) -> dict:
    """Remove a preset."""
    try:
        store.delete_preset(settings.home, name)
    except store.PresetError as exc:
        raise _api_error(exc) from exc
    return {"name": name, "deleted": True}
