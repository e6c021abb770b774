"""Datasets: validation report, rendered preview with the trained span marked, and upload.

Every dataset name is confined to `datasets/`; a model named for token statistics is confined to
`models/` and `training_outputs/`. Heavy libraries load only when a model is named.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from matelix.data import DATASET_SUFFIXES, TEMPLATE_MODES, DatasetError, PreviewSample, ValidationReport
from matelix.data.budget import bounded_read
from matelix.data.formats import format_of_header, format_of_record
from matelix.data.readers import read_text, too_deep, too_deep_line
from matelix.data.validate import load_prepared_tokenizer, preview_samples, validate_dataset
from matelix.paths import PathRefused, confine, too_long
from matelix.server.deps import SettingsDep
from matelix.server.errors import STATUS_BY_KIND, ApiError
from matelix.settings import Settings
from matelix.texts import tr

router = APIRouter(prefix="/datasets", tags=["datasets"])

TemplateMode = Literal[TEMPLATE_MODES]  # type: ignore[valid-type]
MAX_PREVIEW_SAMPLES = 50
UPLOAD_CHUNK_BYTES = 1 << 20
STALE_UPLOAD_S = 60.0  # an upload in progress writes its part file at least once per chunk
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(..., min_length=1, validation_alias=AliasChoices("dataset", "csv_path"),
                         description="Dataset file name under datasets/ (e.g. demo_chat.csv); `csv_path` works too.")
    template_mode: TemplateMode = Field("auto", description="Format to read the file as; auto = detect.")
    model: str | None = Field(None, validation_alias=AliasChoices("model", "model_dir"),
                              description="Model folder (models/… or a run id) for token statistics; `model_dir` "
                              "works too.")
    chunk_size: int = Field(1024, ge=2, le=1 << 20, description="Maximum sequence length for the statistics.")
    column_name: str = Field("text", min_length=1, description="Text column for the column format.")


class PreviewResponse(BaseModel):
    dataset: str
    format: str
    samples: list[PreviewSample]


class UploadResponse(BaseModel):
    name: str = Field(description="File name under datasets/ (use it as `dataset` or `csv_path`).")
    size_bytes: int
    format: str


def dataset_path(name: str, settings: Settings, param: str = "dataset") -> Path:
    """The existing dataset file `name` under datasets/ (a leading `datasets/` is accepted too)."""
    root = settings.datasets_dir
    try:
        path = confine(name, [root], base=root)
        if not path.is_file() and name.startswith("datasets/"):
            path = confine(name, [root], base=settings.home)
    except PathRefused as exc:
        raise ApiError(400, f"{param}: {exc}", param=param, code="path_refused") from exc
    if not path.is_file():
        raise ApiError(404, tr("{param}: no dataset {name!r} under datasets/", param=param, name=name), param=param,
                       code="dataset_not_found")
    return path


def load_tokenizer_for(model: str, settings: Settings, template_mode: str):
    """The tokenizer of a local model, set up as training would set it up (role tokens, pad, template)."""
    from matelix.training.preflight import RunRejected, resolve_model

    try:
        source, _ = resolve_model(model, settings)
    except RunRejected as exc:
        raise ApiError(STATUS_BY_KIND[exc.kind], exc.message.replace("model_dir", "model"), param="model",
                       code=exc.code) from exc
    if not Path(source).is_dir():
        raise ApiError(400, tr("model: {model!r} is not a local model folder", model=model), param="model",
                       code="model_not_found")
    try:
        return load_prepared_tokenizer(source, template_mode, trust_remote_code=settings.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ApiError(400, tr("model: the tokenizer of {model!r} cannot be loaded: {reason}", model=model, reason=exc),
                       param="model", code="tokenizer_error") from exc


@router.post("/validate")
def validate(body: ValidateRequest, settings: SettingsDep) -> ValidationReport:
    """Validate a dataset: format, rows, samples, every problem by row, token statistics with a model."""
    path = dataset_path(body.dataset, settings)
    tokenizer = load_tokenizer_for(body.model, settings, body.template_mode) if body.model else None
    with bounded_read():
        report = validate_dataset(path, body.template_mode, tokenizer, body.chunk_size, body.column_name)
    if report.format is None:  # not readable at all (encoding, quoting, missing columns): a bad request
        raise ApiError(400, report.errors[0].message, param="dataset", code="invalid_dataset")
    report.file = path.relative_to(settings.datasets_dir.resolve()).as_posix()
    return report


@router.get("/{name:path}/preview")
def preview(
    settings: SettingsDep,
    name: Annotated[str, PathParam(description="Dataset file name under datasets/.")],
    n: Annotated[int, Query(ge=1, le=MAX_PREVIEW_SAMPLES, description="How many samples.")] = 5,
    template_mode: Annotated[TemplateMode, Query(description="Format; auto = detect.")] = "auto",
    model: Annotated[str | None, Query(description="Render with this model's tokenizer and template.")] = None,
    column_name: Annotated[str, Query(min_length=1)] = "text",
    train_on_prompt: bool = False,
) -> PreviewResponse:
    """The first samples rendered exactly as the model sees them, trained parts marked."""
    path = dataset_path(name, settings, "name")
    tokenizer = load_tokenizer_for(model, settings, template_mode) if model else None
    try:
        with bounded_read():
            fmt, samples = preview_samples(path, template_mode, tokenizer, n, column_name, train_on_prompt)
    except DatasetError as exc:
        raise ApiError(400, str(exc), param="name", code="invalid_dataset") from exc
    return PreviewResponse(dataset=path.relative_to(settings.datasets_dir.resolve()).as_posix(), format=fmt,
                           samples=samples)


def sanitise_upload_name(raw: str) -> str:
    """A plain file name: refuses anything with a folder part; odd characters become `_`."""
    if not raw or "\x00" in raw or "/" in raw or "\\" in raw or raw.strip() in (".", ".."):
        raise ApiError(400, tr("name: {name!r} is not a plain file name (no folders, no NUL)", name=raw), param="name",
                       code="bad_name")
    name = UNSAFE_NAME_CHARS.sub("_", raw.strip()).lstrip(".")
    suffix = Path(name).suffix.lower()
    if suffix not in DATASET_SUFFIXES or not Path(name).stem.strip("._"):
        raise ApiError(400, tr("name: {name!r} must end in {suffixes}", name=raw,
                               suffixes=", ".join(sorted(DATASET_SUFFIXES))), param="name", code="bad_name")
    if too_long(name):
        raise ApiError(400, tr("name: file name is too long"), param="name", code="bad_name")
    return name[: -len(suffix)] + suffix


@router.post("/upload", status_code=201)
async def upload(
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A CSV, JSONL or JSON dataset file.")],
    name: Annotated[str | None, Form(description="Name to save as (default: the uploaded file's name).")] = None,
    overwrite: Annotated[bool, Form(description="Replace an existing file of that name.")] = False,
) -> UploadResponse:
    """Save an uploaded dataset under datasets/ (sanitised name, size limit, written atomically)."""
    safe = sanitise_upload_name(name if name is not None else (file.filename or ""))
    # Copying and parsing the file block; a worker thread does them so the server keeps answering meanwhile.
    size, fmt = await run_in_threadpool(_store_upload, file.file, safe, overwrite, settings)
    return UploadResponse(name=safe, size_bytes=size, format=fmt)


def remove_stale_uploads(settings: Settings) -> list[str]:
    """Delete `.upload-*.part` files no upload is writing (left by a server killed mid-upload); a part written
    to within the last STALE_UPLOAD_S may belong to another server on the same home and is kept."""
    removed = []
    now = time.time()
    for part in settings.datasets_dir.glob(".upload-*.part"):
        try:
            if part.is_file() and not part.is_symlink() and now - part.stat().st_mtime > STALE_UPLOAD_S:
                part.unlink()
                removed.append(part.name)
        except OSError:
            continue
    return removed


def _store_upload(source: BinaryIO, safe: str, overwrite: bool, settings: Settings) -> tuple[int, str]:
    """Copy the upload in chunks into a temporary file in datasets/, check it, then move it into place;
    returns (size in bytes, detected format)."""
    root = settings.datasets_dir
    root.mkdir(parents=True, exist_ok=True)
    try:
        target = confine(safe, [root], base=root)
    except PathRefused as exc:
        raise ApiError(400, f"name: {exc}", param="name", code="path_refused") from exc
    if target.exists() and not overwrite:
        raise ApiError(409, tr("name: {name!r} already exists under datasets/ (send overwrite=true to replace it)",
                               name=safe), param="name", code="dataset_exists")
    limit = settings.max_upload_mb * 1024 * 1024
    fd, tmp_name = tempfile.mkstemp(dir=root, prefix=".upload-", suffix=".part")
    tmp = Path(tmp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(UPLOAD_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, tr("file is larger than the upload limit of {mib} MiB",
                                           mib=settings.max_upload_mb), param="file", code="request_too_large")
                out.write(chunk)
        if size == 0:
            raise ApiError(400, tr("file: the uploaded file is empty"), param="file", code="invalid_dataset")
        fmt = _readable_format(tmp, safe)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return size, fmt


def _readable_format(tmp: Path, name: str) -> str:
    """The detected format of the uploaded bytes, read as the file type its name says; a file without a
    single record is refused."""
    suffix = Path(name).suffix.lower()
    try:
        return _upload_format(tmp, suffix)
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:
        reason = _where_not_utf8(tmp) if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise ApiError(400, tr("file: {name!r} cannot be read as {suffix}: {reason}", name=name, suffix=suffix,
                               reason=reason), param="file", code="invalid_dataset") from exc


def _where_not_utf8(path: Path) -> str:
    """`line N is not valid UTF-8 (…)`, from reading the whole file the way validation does."""
    try:
        read_text(path)
    except DatasetError as exc:
        return str(exc).split(": ", 1)[-1]
    return tr("it is not UTF-8 text")


def _upload_format(path: Path, suffix: str) -> str:
    """Like `detect_format`, but raises ValueError when the file holds no record: a CSV without a data row,
    a JSONL of blank lines, an empty JSON array, or a first record that is not a JSON object."""
    if suffix == ".csv":
        with path.open("r", encoding="utf-8-sig", newline="") as fh:
            rows = csv.reader(fh)
            header = next(rows, [])
            if next(rows, None) is None:
                raise ValueError(tr("it has no data rows below the header"))
        return format_of_header(header)
    if suffix == ".jsonl":
        with path.open("r", encoding="utf-8-sig") as fh:
            line_no, first = next(((n, line) for n, line in enumerate(fh, start=1) if line.strip()), (0, None))
        if first is None:
            raise ValueError(tr("it has only blank lines, no record (expected one JSON object per line)"))
        record = _parse(first, line_no)
    else:
        text = path.read_text(encoding="utf-8-sig")
        data = _parse(text, None)
        if not isinstance(data, list | dict):
            raise ValueError(tr("it is a JSON {type}, not an object or an array of objects", type=_json_type(data)))
        if data == []:
            raise ValueError(tr("it is an empty JSON array, no record"))
        record = data[0] if isinstance(data, list) else data
    if not isinstance(record, dict):
        if suffix == ".jsonl":
            raise ValueError(tr("the first record is a JSON {type}, not an object (expected one object per line)",
                                type=_json_type(record)))
        raise ValueError(tr("the first record is a JSON {type}, not an object (expected an object or an array of "
                            "objects)", type=_json_type(record)))
    return format_of_record(record)


def _parse(text: str, line: int | None) -> object:
    """json.loads; a document nested too deeply is a ValueError naming its line, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ValueError(too_deep(line or too_deep_line(text))) from exc


def _json_type(value: object) -> str:
    return {str: "string", list: "array", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__)
