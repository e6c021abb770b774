"""Exports of a run: start one (`POST /trainings/{id}/export`), list them with the running job's progress,
and download one (a tar of the folder, or a single file such as the GGUF) behind the API key."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from matelix.export.archive import tar_stream
from matelix.export.jobs import ExportJobs
from matelix.export.runner import ExportRejected, export_folder, find_run, list_exports
from matelix.server.deps import ExportsDep
from matelix.server.errors import ApiError, ErrorResponse

router = APIRouter(tags=["exports"])


class ExportRequest(BaseModel):
    """What to export."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["hf", "adapter", "gguf"] = Field(
        ..., description="hf: clean Hugging Face folder (merged if LoRA); adapter: the LoRA adapter alone; "
                         "gguf: one GGUF file + Ollama Modelfile (Llama family)")
    quant: Literal["f16", "q8_0"] | None = Field(None, description="GGUF weight type (gguf only; default f16)")


def _api_error(exc: ExportRejected) -> ApiError:
    return ApiError(exc.status, exc.message, param=exc.param, code=exc.code)


@router.post("/trainings/{run_id}/export", status_code=202, responses={
    507: {"model": ErrorResponse, "description": "The export cannot be written (disk full)"}})
def start_export(run_id: str, body: ExportRequest, jobs: ExportsDep) -> dict:
    """Start exporting a finished run in the background; follow it with `GET /trainings/{id}/exports`."""
    try:
        return jobs.start(run_id, body.format, body.quant)
    except ExportRejected as exc:
        raise _api_error(exc) from exc


@router.get("/trainings/{run_id}/exports")
def exports(run_id: str, jobs: ExportsDep) -> dict:
    """The run's finished exports (files, sizes, parity result) and its latest export job with progress."""
    try:
        rundir = find_run(jobs.settings, run_id)
    except ExportRejected as exc:
        raise _api_error(exc) from exc
    return {"run_id": run_id, "exports": list_exports(rundir, jobs.settings.home), "job": jobs.job(run_id)}


def _folder(jobs: ExportJobs, run_id: str, name: str):
    try:
        return export_folder(find_run(jobs.settings, run_id), name)
    except ExportRejected as exc:
        raise _api_error(exc) from exc


@router.get("/trainings/{run_id}/exports/{name}/download", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-tar": {}}, "description": "The export folder as tar"}})
def download(run_id: str, name: str, jobs: ExportsDep) -> StreamingResponse:
    """The whole export folder as an uncompressed tar, streamed."""
    folder = _folder(jobs, run_id, name)
    filename = f"{run_id}-{name}.tar"
    return StreamingResponse(tar_stream(folder, f"{run_id}-{name}"), media_type="application/x-tar",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/trainings/{run_id}/exports/{name}/files/{filename}", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "One file"}})
def download_file(run_id: str, name: str, filename: str, jobs: ExportsDep) -> FileResponse:
    """One file of an export (e.g. the .gguf or the Modelfile)."""
    folder = _folder(jobs, run_id, name)
    path = folder / filename
    if "/" in filename or "\\" in filename or filename.startswith(".") or not path.is_file() or path.is_symlink():
        raise ApiError(404, f"export {name!r} has no file {filename!r}", param="filename", code="file_not_found")
    return FileResponse(path, filename=filename, media_type="application/octet-stream")
