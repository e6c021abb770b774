"""Run lm-evaluation-harness on a lab model and keep the result.

Two backends, both lm-eval's own model classes:
- `hf`: lm-eval's in-process Hugging Face backend (`HFLM`, the model loaded from its local folder);
- `api`: lm-eval's `local-completions` client against the lab's `/v1/completions` (loglikelihood through
  `echo` + `logprobs`), so the lab's batching engine does the work; concurrent requests are decoded together.

Progress comes from counting the rows the backend has sent to the model (HF forward passes, API requests)
against the requests lm-eval asked for. Results are stored per model under `<home>/evaluations/`.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from matelix.evaluation.store import save_result
from matelix.evaluation.tasks import task_configs
from matelix.settings import Settings
from matelix.texts import tr

BACKENDS = ("hf", "api")
HF_BATCH_SIZE = 16
API_CONCURRENCY = 16


class EvalRejected(ValueError):
    """A request that cannot run (status is the HTTP status to answer with)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def resolve_model(model: str, settings: Settings) -> Path:
    """A local model folder (base model under models/ or a run under training_outputs/) with full weights."""
    from matelix.catalog import ModelNotFound, ModelRefused, resolve_model_ref
    from matelix.paths import PathRefused

    try:
        found = resolve_model_ref(model, settings)
    except PathRefused as exc:
        raise EvalRejected(400, f"model: {exc}", param="model", code="path_refused") from exc
    except (ModelNotFound, ModelRefused) as exc:
        raise EvalRejected(404, f"model: {exc}", param="model", code="model_not_found") from exc
    if isinstance(found, str):
        raise EvalRejected(400, tr("model: {model!r} is not a local model folder (evaluation runs offline)", model=model),
                           param="model", code="model_not_local")
    if (found / "adapter_config.json").is_file() and not (found / "config.json").is_file():
        raise EvalRejected(400, tr("model: {model!r} holds only a LoRA adapter; evaluate a merged model "
                                   "(merge_lora_on_save, or matelix export RUN --format hf)", model=model), param="model",
                           code="adapter_only")
    return found


class _Progress:
    """Counts rows sent to the model per request type (loglikelihood, generate_until)."""

    def __init__(self, report: Callable[[str, float], None]):
        self.report = report
        self.stage, self.total, self.done = "loading", 0, 0

    def begin(self, stage: str, total: int) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self.report(stage, 0.0)

    def add(self, rows: int) -> None:
        self.done += rows
        if self.total:
            self.report(self.stage, min(0.99, self.done / self.total))


def _track(lm, progress: _Progress) -> None:
    """Wrap the instance's entry points and model calls so every request type and batch is counted."""
    for entry in ("loglikelihood", "generate_until", "loglikelihood_rolling"):
        original = getattr(lm, entry)

        @functools.wraps(original)
        def counted(requests, *args, _original=original, _entry=entry, **kwargs):
            progress.begin(_entry, len(requests))
            return _original(requests, *args, **kwargs)

        setattr(lm, entry, counted)
    if hasattr(lm, "_model_call") and hasattr(lm, "_model_generate"):  # HFLM
        for name in ("_model_call", "_model_generate"):
            original = getattr(lm, name)

            def rows(*args, _original=original, **kwargs):
                batch = args[0] if args else kwargs.get("inps", kwargs.get("context"))
                progress.add(int(batch.shape[0]))
                return _original(*args, **kwargs)

            setattr(lm, name, rows)
    if hasattr(lm, "amodel_call"):  # the API client
        sync, concurrent = lm.model_call, lm.amodel_call

        def model_call(messages, *args, **kwargs):
            progress.add(len(messages))
            return sync(messages, *args, **kwargs)

        async def amodel_call(session, sem, messages, *args, **kwargs):
            out = await concurrent(session, sem, messages, *args, **kwargs)
            progress.add(len(messages))
            return out

        lm.model_call, lm.amodel_call = model_call, amodel_call


def served_name(folder: Path, settings: Settings) -> str:
    """The id /v1/models lists for a model folder (a run is listed by its run id)."""
    from matelix.catalog import list_models

    resolved = folder.resolve()
    for card in list_models(settings):
        if (settings.home / card["path"]).resolve() == resolved:
            return card["id"]
    raise EvalRejected(404, tr("model: {model!r} is not served by the lab (a run must be finished)", model=folder.name),
                       param="model", code="model_not_served")


def _make_lm(backend: str, folder: Path, model: str, base_url: str | None, api_key: str | None):
    if backend == "hf":
        from lm_eval.models.huggingface import HFLM

        return HFLM(pretrained=str(folder), batch_size=HF_BATCH_SIZE, device="cpu"
                    if not _cuda() else "cuda", dtype="float32")
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    if not base_url:
        raise EvalRejected(400, "backend api needs the lab's URL", param="backend", code="no_server")
    header = {"Authorization": f"Bearer {api_key}"} if api_key else {"Authorization": "Bearer none"}
    return LocalCompletionsAPI(base_url=base_url.rstrip("/") + "/v1/completions", model=model,
                               tokenizer=str(folder), tokenizer_backend="huggingface",
                               num_concurrent=API_CONCURRENCY, max_retries=1, header=header, timeout=600)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _metrics(results: dict) -> dict:
    """{task: {metric: value}} with lm-eval's `,none` filter suffix dropped and stderr left out."""
    out = {}
    for task, values in results.items():
        out[task] = {key.split(",")[0]: value for key, value in values.items()
                     if "," in key and "stderr" not in key and isinstance(value, int | float)}
    return out


def _per_item(samples: dict) -> dict:
    """{task: [the first metric's value per item, in item order]}: which items a model got right, so two
    results (two backends, two models) can be compared item by item."""
    out = {}
    for task, rows in samples.items():
        rows = sorted(rows, key=lambda r: r.get("doc_id", 0))
        metric = next((m for m in ("acc", "contains", "exact_match") if rows and m in rows[0]), None)
        if metric:
            out[task] = [float(r[metric]) for r in rows]
    return out


def run_evaluation(settings: Settings, model: str, tasks: list[str], *, limit: int | None = None,
                   backend: str = "hf", base_url: str | None = None,
                   progress: Callable[[str, float], None] | None = None) -> dict:
    """Evaluate `model` (a home-relative model name) on `tasks`; returns the stored result record."""
    import lm_eval
    from transformers import AutoTokenizer

    from matelix.evaluation.tasks import TaskError

    if backend not in BACKENDS:
        raise EvalRejected(400, f"backend: use one of {', '.join(BACKENDS)}", param="backend", code="bad_backend")
    if not tasks:
        raise EvalRejected(400, "tasks: name at least one task", param="tasks", code="no_tasks")
    folder = resolve_model(model, settings)
    own_run = folder if folder.parent == settings.outputs_dir.resolve() else None
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    report = progress or (lambda stage, fraction: None)
    with tempfile.TemporaryDirectory(prefix="matelix-lmeval-") as scratch:
        try:
            configs = task_configs(tasks, own_run=own_run, outputs_dir=settings.outputs_dir.resolve(),
                                   tokenizer=tokenizer, scratch=Path(scratch))
        except TaskError as exc:
            raise EvalRejected(400, f"tasks: {exc}", param="tasks", code="unknown_task") from exc
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        start = time.perf_counter()
        report("loading", 0.0)
        served = served_name(folder, settings) if backend == "api" else model
        lm = _make_lm(backend, folder, served, base_url, settings.api_key)
        tracker = _Progress(report)
        _track(lm, tracker)
        out = lm_eval.simple_evaluate(model=lm, tasks=configs, limit=limit, bootstrap_iters=0,
                                      log_samples=True, random_seed=0, numpy_random_seed=0,
                                      torch_random_seed=0, fewshot_random_seed=0)
        seconds = time.perf_counter() - start
    record = {"model": model, "backend": backend, "tasks": tasks, "limit": limit,
              "results": _metrics(out["results"]),
              "items": {task: int(n.get("effective", n.get("original", 0)))
                        for task, n in (out.get("n-samples") or {}).items()},
              "per_item": _per_item(out.get("samples") or {}),
              "seconds": round(seconds, 2), "finished_at": time.time(),
              "lm_eval_version": getattr(lm_eval, "__version__", None)}
    return save_result(settings, record)
