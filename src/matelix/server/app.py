"""The FastAPI app factory. It only assembles: settings, the shared objects (model registry, run manager,
metrics) on `app.state`, middleware, error handlers, routers, and the one lifespan.

Heavy libraries (torch, transformers) are imported lazily by the routes that need them, so the server
answers `/health` within a second or two of start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from matelix import __version__
from matelix.evaluation.jobs import EvaluationJobs
from matelix.export.jobs import ExportJobs
from matelix.inference.registry import ModelRegistry
from matelix.server import gauges
from matelix.server.auth import ApiKeyMiddleware
from matelix.server.browser_guard import BrowserGuardMiddleware, SecurityHeadersMiddleware
from matelix.server.errors import ERROR_RESPONSES, install_error_handlers
from matelix.server.metrics import Metrics
from matelix.server.middleware import AccessMiddleware, BodyLimitMiddleware, LanguageMiddleware
from matelix.server.routes import (
    catalog,
    datasets,
    docs,
    embeddings,
    estimate,
    evaluations,
    exports,
    health,
    inference,
    metrics,
    openai,
    presets,
    responses,
    system,
    training,
    trainings,
    ui,
)
from matelix.server.supervisor import supervise_runs
from matelix.server.vllm_forward import Forwarder
from matelix.settings import Settings
from matelix.training.jobs import RunManager

log = logging.getLogger("matelix.server")
UPLOAD_PATH = "/datasets/upload"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up and shutdown of everything the app holds (training workers are separate processes and
    outlive the server; `server.shutdown` drains generations before this runs)."""
    supervisor = asyncio.create_task(supervise_runs(app.state.runs))  # settles dead and overdue runs
    yield
    supervisor.cancel()
    await app.state.registry.close()
    if app.state.vllm is not None:
        await app.state.vllm.close()  # stops the `vllm serve` child


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the lab's ASGI app for `settings` (default: read from the environment)."""
    settings = settings or Settings()
    settings.ensure_dirs()
    datasets.remove_stale_uploads(settings)  # parts left by a server killed mid-upload
    app = FastAPI(title="MaTeLiX Lab", version=__version__, responses=ERROR_RESPONSES, docs_url=None, redoc_url=None,
                  description="Fine-tune causal LMs (full/LoRA), watch them learn, serve them (OpenAI-compatible).",
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.registry = ModelRegistry(settings)
    app.state.registry.admission.on_finished = app.state.metrics.record_generation
    # Scans training_outputs/: re-attaches to live workers, settles dead ones as interrupted.
    app.state.runs = RunManager(settings)
    app.state.exports = ExportJobs(settings)
    app.state.evaluations = EvaluationJobs(settings)
    # MATELIX_INFERENCE_BACKEND=vllm: the generation routes forward to vLLM (server/vllm_forward.py).
    app.state.vllm = Forwarder(app.state) if settings.inference_backend == "vllm" else None
    gauges.register(app)
    install_error_handlers(app)
    for module in (health, metrics, system, catalog, datasets, training, trainings, presets, estimate, ui, docs,
                   inference, openai, responses, embeddings):
        app.include_router(module.router)
    app.include_router(exports.router)
    app.include_router(evaluations.router)
    app.mount("/ui", StaticFiles(directory=ui.UI_DIR), name="ui")
    app.mount(docs.DOCS_ASSETS_URL, StaticFiles(directory=docs.DOCS_ASSETS_DIR), name="docs-assets")
    if settings.static_dir.is_dir():
        app.mount("/static", StaticFiles(directory=settings.static_dir), name="static")
    # Order matters (last added is outermost): access (request id, log, metrics) > language > security headers >
    # browser guard (Host, Origin, JSON bodies) > CORS > API key > body limit > routes, so even a 401 or 413
    # carries a request id and the headers, a foreign site is refused before anything else, and a CORS
    # preflight is answered before the key check.
    mib = 1024 * 1024
    app.add_middleware(BodyLimitMiddleware, limits={"": settings.max_request_mb * mib,
                                                    UPLOAD_PATH: settings.max_upload_mb * mib})
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BrowserGuardMiddleware, bound_host=settings.host, allowed_hosts=settings.allowed_hosts,
                       cors_origins=settings.cors_origins, routes=app.router.routes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(LanguageMiddleware)
    app.add_middleware(AccessMiddleware, metrics=app.state.metrics)
    psutil.cpu_percent(interval=None)  # prime: the first reading is always 0.0
    return app
