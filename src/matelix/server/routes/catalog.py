"""What is on disk under home: datasets, local models, training runs; GGUF files and their import."""

import re
import threading

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from matelix import catalog
from matelix.paths import PathRefused, confine, relative_to_home
from matelix.server.deps import SettingsDep
from matelix.server.errors import ApiError
from matelix.texts import tr

router = APIRouter(tags=["catalog"])
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_importing = threading.Lock()  # one conversion at a time: each holds a whole model in memory


@router.get("/available_datasets")
def available_datasets(settings: SettingsDep) -> list[dict]:
    """Dataset files under `datasets/` with size and detected format."""
    return catalog.list_datasets(settings)


@router.get("/available_models")
def available_models(settings: SettingsDep) -> list[dict]:
    """Local models under `models/`, finished training runs, and runs' complete checkpoints
    (`run@checkpoint-N`; `run@latest` with its `step` while the run trains)."""
    return catalog.list_models(settings)


@router.get("/models/gguf")
def gguf_files(settings: SettingsDep) -> list[dict]:
    """GGUF files under `models/` that `POST /models/import-gguf` can convert."""
    root = settings.models_dir
    files = sorted(p for p in root.rglob("*.gguf") if p.is_file() and p.resolve().is_relative_to(root.resolve()))
    return [{"file": relative_to_home(p, settings.home), "size_bytes": p.stat().st_size} for p in files]


class GGUFImport(BaseModel):
    file: str = Field(..., min_length=1, description="A .gguf file under models/ (see GET /models/gguf).")
    name: str = Field(..., min_length=1, max_length=96, description="Folder name of the new model under models/.")


@router.post("/models/import-gguf", status_code=201)
async def import_gguf(body: GGUFImport, settings: SettingsDep) -> dict:
    """Convert a GGUF file under `models/` into the HF model folder `models/NAME` (about a minute for a
    135M model; one import at a time)."""
    from matelix.models.gguf_import import GGUFImportError
    from matelix.models.gguf_import import import_gguf as convert

    if not MODEL_NAME.match(body.name):
        raise ApiError(400, tr("name: letters, digits, '.', '_' and '-' only"), param="name", code="invalid_name")
    try:
        path = confine(body.file, [settings.models_dir], base=settings.home)
    except PathRefused as exc:
        raise ApiError(400, f"file: {exc}", param="file", code="path_refused") from exc
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise ApiError(404 if path.suffix.lower() == ".gguf" else 400,
                       tr("file: {file!r} is not a .gguf file under models/", file=body.file), param="file",
                       code="not_found" if path.suffix.lower() == ".gguf" else "invalid_file")
    out = settings.models_dir / body.name
    if out.exists():
        raise ApiError(409, tr("models/{name} exists already", name=body.name), param="name", code="model_exists")
    if not _importing.acquire(blocking=False):
        raise ApiError(409, tr("another GGUF import is running; try again when it has finished"), code="busy")
    try:
        await run_in_threadpool(convert, path, out, log=lambda _message: None)
    except GGUFImportError as exc:
        raise ApiError(400, str(exc), param="file", code="unsupported_gguf") from exc
    finally:
        _importing.release()
    return {"model_dir": relative_to_home(out, settings.home), "name": body.name}
