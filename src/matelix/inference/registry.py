"""The model registry: which models are resident, loading them off the event loop, LRU eviction, unloading.

API for route adapters (all coroutines run on the server's event loop):

    registry = ModelRegistry(settings)                  # one per app, built by the app factory
    loaded = await registry.acquire(model_ref, device)  # -> LoadedModel (loads once, concurrent callers wait)
    loaded = await registry.acquire(model_ref, quantization="int8")  # int8 weights (reloads a resident fp32 copy)
    loaded.id, loaded.tokenizer, loaded.engine, loaded.context_length, loaded.stop_token_ids
    ids = loaded.render_chat(messages, system)          # or loaded.encode(text)
    handles = registry.admission.submit(loaded, [ids], SamplingParams(...), n=1)  # limits, 429, metrics
    await registry.unload(model_ref)                    # None = all; in-flight requests end with "error"
    # LRU eviction (max_loaded_models) lets the evicted model's running requests finish first (≤ 30 s).
    registry.status()                                   # dict for /inference_status

`model_ref` may be None or "" (the newest finished training run with a saved model, else
`models/tiny-demo`), anything `catalog.resolve_model_ref` accepts: a path relative to home, a run id,
a folder name under `models/`, an absolute path inside those folders (all confined), or a Hugging Face repo
id (`owner/name`) when `settings.offline` is false; or a checkpoint of a run: `run@checkpoint-N`, or
`run@latest` (the run's newest complete checkpoint while it trains, its final model once it has one: resolved
on every request, so the next request after a new checkpoint gets it).

Adapters (LoRA runs and their checkpoints) share one resident copy of their base (`inference/adapters.py`):
served as an adapter when its base is already resident, when another adapter of that base is in use, or when
the reference names a checkpoint; otherwise (the one fine-tune of its base in use) merged into its own copy,
which decodes faster. At most `max_loaded_adapters` adapters stay attached; the least recently used idle one
is removed first. Quantized models (int8, fp16) never carry adapters.
Unknown names raise `ModelNotFound`; bad devices and hub ids while offline raise `ModelRefused`;
a folder that transformers cannot load raises `ModelLoadFailed`.

The same resolution is used for an adapter's `base_model_name_or_path`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import logging
import re
import time
from collections import OrderedDict
from pathlib import Path

from matelix.catalog import (
    ModelNotFound,
    ModelRefused,
    is_model_dir,
    list_run_dirs,
    read_json,
    resolve_model_ref,
)
from matelix.checkpoint_refs import checkpoint_folder, parse_ref
from matelix.inference.adapters import (
    AdapterModel,
    AdapterNotServable,
    adapter_base_ref,
    attach,
    detach,
    is_lora,
    read_adapter,
)
from matelix.inference.admission import AdmissionGate
from matelix.inference.loading import LoadedModel, ModelLoadFailed, ModelSource, load_model
from matelix.inference.quantize import check_quantization
from matelix.paths import PathRefused, relative_to_home
from matelix.runstates import ACTIVE_STATES
from matelix.settings import Settings
from matelix.training.rundir import CHECKPOINT_RE, checkpoint_step

log = logging.getLogger("matelix.inference")

DEMO_MODEL = "models/tiny-demo"
# An evicted model finishes its running requests for up to this long before they are ended.
EVICTION_DRAIN_S = 30.0
DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d{1,2})?)$")

__all__ = ["LoadedModel", "ModelLoadFailed", "ModelNotFound", "ModelRefused", "ModelRegistry", "PathRefused"]


class ModelRegistry:
    """Resident models of one server, least recently used first."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._adapters: OrderedDict[str, AdapterModel] = OrderedDict()  # on a resident base, LRU first
        self._adapter_names = itertools.count(1)
        self._loading: dict[str, asyncio.Task] = {}
        self.admission = AdmissionGate(settings)  # every adapter submits through it

    # ----- resolution (quick disk checks, safe on the event loop) -------------------------------

    def resolve(self, ref: str | None) -> ModelSource:
        """Map a user's model reference to a source; raises PathRefused, ModelNotFound, ModelRefused."""
        if ref is None or not ref.strip():
            return self.default_source()
        checkpoint = parse_ref(ref)
        if checkpoint is not None:
            return self._checkpoint_source(*checkpoint)
        found = resolve_model_ref(ref, self.settings)
        return ModelSource(id=found, kind="hub") if isinstance(found, str) else self._local_source(found)

    def _local_source(self, path: Path) -> ModelSource:
        display = relative_to_home(path, self.settings.home)
        outputs = self.settings.outputs_dir.resolve()
        model_id = path.name if path.parent == outputs else display  # runs are named by their id
        kind = "model" if (path / "config.json").is_file() else "adapter"
        return ModelSource(id=model_id, kind=kind, path=path, display_path=display)

    def _checkpoint_source(self, run: str, which: str) -> ModelSource:
        path = checkpoint_folder(run, which, self.settings)
        if not CHECKPOINT_RE.match(path.name):
            return self._local_source(path)  # a finished run's latest: its final model
        return dataclasses.replace(self._local_source(path), id=f"{path.parent.name}@{path.name}",
                                   checkpoint_step=checkpoint_step(path))

    def default_source(self) -> ModelSource:
        """The newest finished run holding a model, else the demo model."""
        runs = []
        for run in list_run_dirs(self.settings):
            status = read_json(run / "status.json")
            if is_model_dir(run) and status.get("state") not in ACTIVE_STATES:
                marker = run / "config.json" if (run / "config.json").is_file() else run / "adapter_config.json"
                runs.append((marker.stat().st_mtime, run.name, run))
        if runs:
            return self._local_source(max(runs)[2].resolve())
        demo = self.settings.home / DEMO_MODEL
        if is_model_dir(demo):
            return self._local_source(demo.resolve())
        raise ModelNotFound("no model to serve: no finished training run and no models/tiny-demo "
                            "(build it with `matelix demo-model --out models/tiny-demo`)")

    def normalize_device(self, device: str | None) -> str | None:
        """None for auto, else the device if this server has it; probing CUDA can take a while on the first
        call, so `acquire` runs this on a worker thread."""
        if device is None or device in ("", "auto"):
            return None
        if not DEVICE_PATTERN.match(device):
            raise ModelRefused(f"device must be cpu, cuda, cuda:N, mps or auto, got {device!r}", "device")
        import torch

        if device.startswith("cuda"):
            index = int(device.split(":")[1]) if ":" in device else 0
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                raise ModelRefused(f"device {device!r} is not available on this server", "device")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ModelRefused("device 'mps' is not available on this server", "device")
        return device

    @staticmethod
    def _default_device() -> str:
        """The best device present; probes torch, so `_load` calls it on a worker thread."""
        import torch

        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"

    # ----- residency ----------------------------------------------------------------------------

    async def acquire(self, ref: str | None = None, device: str | None = None, *,
                      prefer_resident: bool = True, quantization: str | None = None) -> LoadedModel:
        """The resident model for `ref`, loading it (once, off the event loop) when needed.

        Without `ref`, `prefer_resident` returns the most recently used resident model when there is one
        (the `/chat` behaviour); otherwise the default model is resolved. `quantization` None takes a resident
        model as it is and loads a new one with `settings.quantization`; a resident model loaded otherwise
        than asked for is reloaded, as for another device.
        """
        device = await asyncio.to_thread(self.normalize_device, device) if device else None
        if quantization is not None:
            check_quantization(quantization, device)

        def fits(loaded: LoadedModel) -> bool:
            return device in (None, loaded.device) and quantization in (None, loaded.quantization)

        if prefer_resident and (ref is None or not ref.strip()) and self._loaded:
            loaded = next(reversed(self._loaded.values()))
            if fits(loaded):
                loaded.last_used = time.time()
                return loaded
        source = self.resolve(ref)
        if source.kind == "adapter" and source.id not in self._loaded:
            base = self._shared_base(source, quantization)
            if base is not None:
                return await self._acquire_adapter(source, base, device)
        while True:
            loaded = self._loaded.get(source.id)
            if loaded is not None and fits(loaded):
                self._loaded.move_to_end(source.id)
                loaded.last_used = time.time()
                return loaded
            task = self._loading.get(source.id)
            if task is None:
                break
            await asyncio.shield(task)  # a failed load raises here for every waiter
        task = asyncio.get_running_loop().create_task(self._load(source, device, quantization))
        self._loading[source.id] = task
        return await asyncio.shield(task)

    async def _load(self, source: ModelSource, device: str | None, quantization: str | None) -> LoadedModel:
        try:
            device = device or await asyncio.to_thread(self._default_device)
            quantization = quantization or (self.settings.quantization if device == "cpu" else "none")
            check_quantization(quantization, device)
            if source.id in self._loaded:  # same model on another device or quantized otherwise: replace it
                await self._unload_one(source.id, "model reloaded on another device or quantization")
            await self._evict(keep=self.settings.max_loaded_models - 1)
            log.info("loading model %s on %s", source.id, device)
            loaded = await asyncio.to_thread(load_model, source, device, self.settings, self._resolve_base,
                                             quantization)
            self._loaded[source.id] = loaded
            await self._evict(keep=self.settings.max_loaded_models, protect=source.id)
            log.info("model %s ready in %.1fs", source.id, loaded.load_seconds)
            return loaded
        finally:
            self._loading.pop(source.id, None)

    # ----- adapters on a shared base -----------------------------------------------------------

    def _shared_base(self, source: ModelSource, quantization: str | None) -> ModelSource | None:
        """The base to serve adapter `source` on, or None to merge it into its own copy (module docstring)."""
        if (quantization or self.settings.quantization) != "none" or not is_lora(source):
            return None
        ref = adapter_base_ref(source)
        try:
            base = self.resolve(ref) if ref else None
        except (PathRefused, ModelNotFound, ModelRefused):
            return None  # the merging path says why the base cannot be used
        if base is None or base.kind == "adapter":
            return None
        resident = self._loaded.get(base.id)
        if resident is not None:
            return base if resident.served_as == "model" and resident.quantization == "none" else None
        siblings = any(m.base_model == base.id for m in [*self._loaded.values(), *self._adapters.values()])
        return base if siblings or source.checkpoint_step is not None else None

    def is_resident(self, model_id: str) -> bool:
        """Whether `model_id` is exactly the id of a loaded model or adapter (no disk access)."""
        return model_id in self._loaded or model_id in self._adapters

    def serving(self, ref: str) -> dict:
        """How `ref` is served, for listings (never loads): `served_as` (`model` | `merged` | `adapter`; for a model
        not resident, how its next load would serve it), `resident`, `base_model`, `checkpoint_step`; {} when
        `ref` does not resolve."""
        try:
            source = self.resolve(ref)
        except (PathRefused, ModelNotFound, ModelRefused):
            return {}
        resident = self._adapters.get(source.id) or self._loaded.get(source.id)
        if resident is not None:
            return {"served_as": resident.served_as, "resident": True, "base_model": resident.base_model,
                    "checkpoint_step": source.checkpoint_step}
        if source.kind != "adapter":
            return {"served_as": "model", "resident": False, "checkpoint_step": source.checkpoint_step}
        base = self._shared_base(source, None)
        return {"served_as": "adapter" if base else "merged", "resident": False,
                "base_model": base.id if base else adapter_base_ref(source), "checkpoint_step": source.checkpoint_step}

    async def _acquire_adapter(self, source: ModelSource, base: ModelSource, device: str | None) -> LoadedModel:
        while True:
            adapter = self._adapters.get(source.id)
            if adapter is not None and not adapter.engine.closed and device in (None, adapter.device):
                self._adapters.move_to_end(source.id)
                self._loaded.move_to_end(adapter.base_model)  # its base is in use too
                adapter.last_used = time.time()
                return adapter
            task = self._loading.get(source.id)
            if task is None:
                break
            await asyncio.shield(task)
        task = asyncio.get_running_loop().create_task(self._load_adapter(source, base, device))
        self._loading[source.id] = task
        return await asyncio.shield(task)

    async def _load_adapter(self, source: ModelSource, base_source: ModelSource, device: str | None) -> LoadedModel:
        try:
            if source.id in self._adapters:  # on another device: replace it
                await self._unload_adapter(source.id)
            base = await self.acquire(base_source.id, device, prefer_resident=False, quantization="none")
            started = time.perf_counter()
            try:
                spec = await asyncio.to_thread(read_adapter, source, base, self.settings)
            except AdapterNotServable as exc:
                log.info("%s: merged into its own copy instead", exc)
                return await self._load(source, device, None)
            lane = await asyncio.to_thread(attach, base, spec, f"lora{next(self._adapter_names)}")
            adapter = AdapterModel(id=source.id, source=source, tokenizer=spec.tokenizer, model=base.model,
                                   engine=lane, device=base.device, dtype=base.dtype,
                                   context_length=base.context_length, stop_token_ids=lane.route.stop_token_ids,
                                   load_seconds=time.perf_counter() - started, base_model=base.id,
                                   served_as="adapter", adapter_bytes=spec.nbytes,
                                   adapter_parameters=spec.parameters)
            self._adapters[source.id] = adapter
            log.info("adapter %s ready on %s in %.2fs", source.id, base.id, adapter.load_seconds)
            await self._evict_adapters(self.settings.max_loaded_adapters, protect=source.id)
            return adapter
        finally:
            self._loading.pop(source.id, None)

    async def _evict_adapters(self, keep: int, protect: str) -> None:
        """Remove the least recently used idle adapters beyond `keep`; busy ones stay until a later load."""
        for adapter_id in list(self._adapters):
            if len(self._adapters) <= keep:
                return
            if adapter_id != protect and self._adapters[adapter_id].engine.close_if_idle():
                await self._unload_adapter(adapter_id)

    async def _unload_adapter(self, adapter_id: str, drain_s: float = 0.0) -> None:
        adapter = self._adapters.pop(adapter_id, None)
        if adapter is None:
            return
        log.info("removing adapter %s from %s", adapter_id, adapter.base_model)
        adapter.engine.close(drain_s=drain_s)
        base = self._loaded.get(adapter.base_model)
        if base is not None:
            await asyncio.to_thread(detach, base, adapter.engine)

    def _resolve_base(self, ref: str) -> ModelSource:
        try:
            return self.resolve(ref)
        except (PathRefused, ModelNotFound, ModelRefused) as exc:
            raise ModelLoadFailed(f"the adapter's base model {ref!r} cannot be used: {exc}") from exc

    async def _evict(self, keep: int, protect: str | None = None) -> None:
        while len(self._loaded) > max(keep, 0):
            victim = next((k for k in self._loaded if k != protect), None)
            if victim is None:
                return
            await self._unload_one(victim, "model evicted to make room for another", EVICTION_DRAIN_S)

    async def _unload_one(self, model_id: str, reason: str, drain_s: float = 0.0) -> None:
        if model_id in self._adapters:
            await self._unload_adapter(model_id, drain_s)
            return
        loaded = self._loaded.pop(model_id, None)
        if loaded is None:
            return
        for adapter_id in [a.id for a in self._adapters.values() if a.base_model == model_id]:
            self._adapters.pop(adapter_id).engine.close()  # their requests run in the base's engine
        log.info("unloading model %s (%s)", model_id, reason)
        await asyncio.to_thread(_release, loaded, reason, drain_s)

    async def unload(self, ref: str | None = None) -> list[str]:
        """Unload `ref` (None = every resident model); returns the ids unloaded."""
        ids = list(self._loaded) if ref is None or not ref.strip() else [self.resolve(ref).id]
        ids = [i for i in ids if i in self._loaded or i in self._adapters]
        for model_id in ids:
            await self._unload_one(model_id, "model unloaded")
        return ids

    async def close(self, reason: str = "model unloaded", drain_s: float = 0.0) -> None:
        """Unload every model; running requests may finish for up to `drain_s` s, then end with `reason`."""
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*(self._unload_one(model_id, reason, drain_s) for model_id in list(self._loaded)))

    def status(self) -> dict:
        models = [m.info() for m in reversed(self._loaded.values())]  # most recently used first
        adapters = [m.info() for m in reversed(self._adapters.values())]  # requests counted in their base
        return {"loaded": models + adapters, "loading": sorted(self._loading),
                "max_loaded_models": self.settings.max_loaded_models,
                "max_loaded_adapters": self.settings.max_loaded_adapters,
                "active_requests": sum(m["active_requests"] for m in models),
                "queued_requests": sum(m["queued_requests"] for m in models)}


def _release(loaded: LoadedModel, reason: str, drain_s: float) -> None:
    """Stop the engine (requests still running after `drain_s` end with `reason`) and free the weights."""
    loaded.engine.close(reason, drain_s=drain_s)
    if loaded.engine.prefix_cache is not None:
        loaded.engine.prefix_cache.clear()
    device = loaded.device
    loaded.engine.model = None
    loaded.model = None
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
