"""The dashboard: `/` serves `home/static/index.html` when a user placed one (seed behaviour), else the
packaged UI from `matelix/ui/`. Static files are public; every API route stays behind the key."""

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from matelix.server.deps import SettingsDep

UI_DIR = Path(str(files("matelix") / "ui"))
router = APIRouter(include_in_schema=False)


@router.get("/")
def index(settings: SettingsDep) -> FileResponse:
    custom = settings.static_dir / "index.html"
    return FileResponse(custom if custom.is_file() else UI_DIR / "index.html", media_type="text/html")
