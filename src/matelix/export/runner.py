"""One export of one run, start to finish: check the request, load the lab's model, write the export to a
temporary folder, load it back and replay the probes (`parity.py`), record the result, rename into place.

    training_outputs/<run>/exports/<name>/      name: hf | adapter | gguf-f16 | gguf-q8_0
        ... the model files ...
        export.json     what was exported, from which run, files and sizes, facts of the conversion
        parity.json     the probe replay (see parity.py)

Nothing half-written is ever visible: the export is built in `.<name>.partial-<pid>-*` beside its final
place and renamed when whole (an older export of the same name is replaced only then); what a killed export
left behind is removed by the next export of that name. A full disk is
`ExportRejected(507)` and leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from matelix.catalog import is_model_dir, read_json
from matelix.export import FORMATS, QUANTS
from matelix.paths import PathRefused, confine, relative_to_home
from matelix.settings import Settings
from matelix.texts import tr
from matelix.training.rundir import ACTIVE_STATES, RunDir, process_alive, write_json_atomic

EXPORTS_DIR = "exports"
RECORD = "export.json"
PARITY = "parity.json"
PARTIAL = ".partial-"
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
Progress = Callable[[str, float], None]


class ExportRejected(Exception):
    """An export that cannot be made; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def no_adapter() -> str:
    return tr("the run holds no LoRA adapter (a full fine-tune, or an adapter merged on save): export it as hf or "
              "gguf")


def export_name(fmt: str, quant: str | None) -> str:
    return f"gguf-{quant}" if fmt == "gguf" else fmt


def check_request(fmt: str, quant: str | None) -> str | None:
    """The quant to use (gguf defaults to f16), or ExportRejected(400)."""
    if fmt not in FORMATS:
        raise ExportRejected(400, f"format must be one of {', '.join(FORMATS)}", param="format")
    if fmt != "gguf":
        if quant is not None:
            raise ExportRejected(400, f"quant applies to gguf only, not to {fmt}", param="quant")
        return None
    quant = quant or "f16"
    if quant not in QUANTS:
        raise ExportRejected(400, f"quant must be one of {', '.join(QUANTS)}", param="quant")
    return quant


def find_run(settings: Settings, run_id: str) -> RunDir:
    """The run folder `run_id`, or ExportRejected (400/404)."""
    if not isinstance(run_id, str) or "/" in run_id or "\\" in run_id:
        raise ExportRejected(400, f"run_id {run_id!r} must be a run folder name", param="run_id")
    try:
        path = confine(run_id, [settings.outputs_dir], base=settings.outputs_dir)
    except PathRefused as exc:
        raise ExportRejected(400, f"run_id: {exc}", param="run_id", code="path_refused") from exc
    if path == settings.outputs_dir.resolve() or not (path / "train_config.json").is_file():
        raise ExportRejected(404, f"no training run {run_id!r}", param="run_id", code="run_not_found")
    return RunDir(path)


def run_folder(settings: Settings, run_id: str, fmt: str | None = None) -> RunDir:
    """The finished run `run_id` with a final model (an adapter for `fmt="adapter"`), or ExportRejected
    (400/404/409/422)."""
    rundir = find_run(settings, run_id)
    status = rundir.read_status()
    if status.get("state") in ACTIVE_STATES and process_alive(status.get("pid"), status.get("pid_started")):
        raise ExportRejected(409, tr("run {run!r} is still training; export it when it has ended", run=run_id),
                             code="run_active")
    if not is_model_dir(rundir.path):
        raise ExportRejected(409, tr("run {run!r} has no final model to export", run=run_id), code="no_model")
    if fmt == "adapter" and not (rundir.path / "adapter_config.json").is_file():
        raise ExportRejected(422, no_adapter(), param="format", code="not_exportable")
    return rundir


def destination(settings: Settings, rundir: RunDir, name: str, out: str | None) -> Path:
    if out is None:
        return rundir.path / EXPORTS_DIR / name
    try:
        return confine(out, [settings.home], base=settings.home)
    except PathRefused as exc:
        raise ExportRejected(400, f"out: {exc}", param="out", code="path_refused") from exc


def export_run(settings: Settings, run_id: str, fmt: str, quant: str | None = None, out: str | None = None,
               progress: Progress = lambda stage, fraction: None) -> dict:
    """Export run `run_id` as `fmt` and return its record (with the parity result). Raises ExportRejected."""
    quant = check_request(fmt, quant)
    rundir = run_folder(settings, run_id, fmt)
    name = export_name(fmt, quant)
    dest = destination(settings, rundir, name, out)
    if dest == rundir.path.resolve() or rundir.path.resolve().is_relative_to(dest):
        raise ExportRejected(400, "out must not be the run folder or a folder above it", param="out")
    tmp = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}{PARTIAL}{os.getpid()}-", dir=dest.parent))
        record = _build(settings, rundir, fmt, quant, tmp, progress)
        record.update(name=name, path=relative_to_home(dest, settings.home))
        write_json_atomic(tmp / RECORD, record)
        _publish(tmp, dest)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in FULL_DISK:
            raise ExportRejected(507, tr("cannot write the export: {reason}", reason=exc.strerror or exc),
                                 code="storage_error") from exc
        raise
    progress("done", 1.0)
    return record


def remove_stale_partials(dest: Path) -> None:
    """Remove what an export killed part-way left beside `dest` (its process is gone; the pid is in the name)."""
    for folder in dest.parent.glob(f".{dest.name}{PARTIAL}*"):
        pid = folder.name[len(f".{dest.name}{PARTIAL}"):].split("-", 1)[0]
        if folder.is_dir() and not (pid.isdigit() and psutil.pid_exists(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _publish(tmp: Path, dest: Path) -> None:
    """Rename the finished export into place; an older one of the same name goes only after that."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _build(settings: Settings, rundir: RunDir, fmt: str, quant: str | None, tmp: Path, progress: Progress) -> dict:
    from matelix.export.adapter import AdapterExportError
    from matelix.export.gguf_writer import GGUFExportError
    from matelix.export.source import SourceError, load_run_model

    started = time.time()
    progress("loading", 0.05)
    try:
        source = load_run_model(rundir.path, settings)
        progress("writing", 0.25)
        facts, exported = _write(settings, rundir, source, fmt, quant, tmp, progress)
    except (SourceError, AdapterExportError, GGUFExportError) as exc:
        raise ExportRejected(422, str(exc), param="format", code="not_exportable") from exc
    progress("verifying", 0.7)
    parity = _verify(source, exported(), fmt, quant)
    write_json_atomic(tmp / PARITY, parity)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    return {"run_id": rundir.run_id, "format": fmt, "quant": quant, "created_at": started,
            "seconds": round(time.time() - started, 2), "source_kind": source.kind,
            "files": [{"name": p.relative_to(tmp).as_posix(), "size_bytes": p.stat().st_size} for p in files],
            "size_bytes": sum(p.stat().st_size for p in files), "facts": facts,
            "parity": {k: v for k, v in parity.items() if k != "rows"}}


def _write(settings, rundir, source, fmt, quant, tmp, progress):
    """Write the files; returns (facts, a function loading the export back as a parity.Model)."""
    from matelix.export import parity

    if fmt == "hf":
        from matelix.export.hf import write_hf_folder

        facts = write_hf_folder(source.model, source.tokenizer, tmp)
        return facts, lambda: parity.Model(*_load_hf(tmp))
    if fmt == "adapter":
        from matelix.export.adapter import AdapterExportError, base_name, write_adapter

        if source.kind != "adapter":
            raise AdapterExportError(no_adapter())
        facts = write_adapter(rundir.path, source.tokenizer, tmp,
                              base_name(source.base_ref, source.base_path, settings.home))
        return facts, lambda: parity.Model(*_load_adapter(tmp, source.base_path or source.base_ref))
    from matelix.export.gguf_writer import write_gguf
    from matelix.export.hf import save_tokenizer, tie_embeddings
    from matelix.export.modelfile import ollama_modelfile
    from matelix.inference.chat import stop_token_ids

    tying = tie_embeddings(source.model)
    scratch = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=tmp))
    try:
        save_tokenizer(source.tokenizer, scratch)
        gguf_name = f"{rundir.run_id}-{quant}.gguf"
        facts = write_gguf(source.model, source.tokenizer, scratch, tmp / gguf_name, quant, rundir.run_id,
                           progress=lambda f: progress("writing", 0.25 + 0.4 * f))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stops = [source.tokenizer.convert_ids_to_tokens(i)
             for i in sorted(stop_token_ids(source.tokenizer, source.model))]
    text, kind = ollama_modelfile(gguf_name, source.tokenizer, stops, source.model.config.max_position_embeddings,
                                  source.model.generation_config)
    (tmp / "Modelfile").write_text(text, encoding="utf-8")
    facts.update(gguf_file=gguf_name, embeddings=tying, ollama_template=kind, stop_tokens=stops)
    return facts, lambda: parity.Model(*_load_gguf(tmp, gguf_name))


def _load_hf(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    return tokenizer, model.eval()


def _load_adapter(folder: Path, base):
    """The adapter as peft applies it to its base (not merged), with the exported tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32, local_files_only=True)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer, PeftModel.from_pretrained(model, str(folder)).eval()


def _load_gguf(folder: Path, name: str):
    """The GGUF as transformers' GGUF loader reads it (weights dequantized to fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
    return tokenizer, model.eval()


def _verify(source, exported, fmt: str, quant: str | None) -> dict:
    from matelix.export.parity import Model, check_parity

    loader = {"hf": "transformers", "adapter": "peft", "gguf": "transformers-gguf"}[fmt]
    return check_parity(Model(source.tokenizer, source.model), exported, exact=quant != "q8_0", loader=loader)


def list_exports(rundir: RunDir, home: Path) -> list[dict]:
    """The finished exports of a run (records, newest first); partial folders are never listed."""
    root = rundir.path / EXPORTS_DIR
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        record = read_json(folder / RECORD)
        if folder.name.startswith(".") or not folder.is_dir() or not record:
            continue
        out.append({**record, "name": folder.name, "path": relative_to_home(folder, home)})
    return sorted(out, key=lambda r: r.get("created_at") or 0, reverse=True)


def export_folder(rundir: RunDir, name: str) -> Path:
    """A finished export of the run by name, or ExportRejected(404)."""
    if not isinstance(name, str) or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
        raise ExportRejected(400, f"export name {name!r} is not valid", param="name")
    folder = rundir.path / EXPORTS_DIR / name
    if not (folder / RECORD).is_file():
        raise ExportRejected(404, f"run {rundir.run_id!r} has no export {name!r}", param="name",
                             code="export_not_found")
    return folder
