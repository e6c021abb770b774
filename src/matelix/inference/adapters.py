"""LoRA adapters served on one resident base: reading an adapter off the event loop, attaching it to the base's
engine between two steps, and the `AdapterLane` an adapter's `LoadedModel` holds as its engine.

    spec = read_adapter(source, base, settings)          # worker thread: LoRA matrices, tokenizer; or refuses
    lane = attach(base, spec, name="lora3")              # worker thread; the engine adds it between two steps
    handles = lane.submit_many(ids, params, n=1)         # rows of the base's batch, through adapter "lora3"
    lane.close(); detach(base, lane)                     # refuse new requests, remove it once none is running

Rows of several adapters, and of the base itself, run in one forward pass (`multi_lora.py`: every adapter's
matrices stacked per layer, each row masked to its own). Reading the files happens on a worker thread; only the
attach itself (a few tensor concatenations) runs on the engine thread between two steps, so loading an adapter
does not pause the others for longer than that.

Served this way: plain LoRA on Linear layers (peft `LoraConfig`, no DoRA, no bias, no rank or alpha patterns, no
trained embedding rows or `modules_to_save`) whose tokenizer fits the base's embedding matrix. Anything else
raises `AdapterNotServable` and the registry merges the adapter into its own copy, as before. Rows of an adapter
whose tokenizer is smaller than the embedding never sample the ids beyond it (`Route.vocab_limit`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

from matelix.catalog import read_json
from matelix.inference.chat import stop_token_ids
from matelix.inference.detokenize import TextStream
from matelix.inference.engine import EngineClosed, Route
from matelix.inference.handle import GenerationEvent, RequestHandle
from matelix.inference.loading import LoadedModel, ModelLoadFailed, ModelSource, has_tokenizer
from matelix.inference.sampling import SamplingParams
from matelix.settings import Settings

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PEFT_PREFIX = "base_model.model."  # peft's saved keys: this prefix + the module path in the base model


class AdapterNotServable(ModelLoadFailed):
    """This adapter cannot share the resident base (message says why); it is merged into its own copy."""


@dataclass
class AdapterSpec:
    """An adapter read from disk, ready to attach: per-layer (A, B, scale), its rank, tokenizer and size."""

    source: ModelSource
    layers: dict[str, tuple]  # module path in the base model -> (A (r, in), B (out, r), scale)
    rank: int
    tokenizer: object
    nbytes: int
    parameters: int


def adapter_base_ref(source: ModelSource) -> str | None:
    """The base model an adapter folder names (`base_model_name_or_path`), or None."""
    ref = read_json(source.path / "adapter_config.json").get("base_model_name_or_path")
    return ref if isinstance(ref, str) and ref else None


def is_lora(source: ModelSource) -> bool:
    """Only LoRA adapters can share a base; other adapter types are merged on load."""
    return str(read_json(source.path / "adapter_config.json").get("peft_type", "")).upper() == "LORA"


def read_adapter(source: ModelSource, base: LoadedModel, settings: Settings) -> AdapterSpec:
    """Read `source`'s LoRA matrices and tokenizer (the base's when it has none); worker thread. Raises
    AdapterNotServable (merge it instead) or ModelLoadFailed."""
    from peft import LoraConfig
    from transformers import AutoTokenizer

    try:
        config = LoraConfig.from_pretrained(str(source.path))
        weights = next((source.path / w for w in ADAPTER_WEIGHTS if (source.path / w).is_file()), None)
        if weights is None:
            raise ModelLoadFailed(f"{source.id}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
        state_dict = _load_weights(weights)
        tokenizer = base.tokenizer
        if has_tokenizer(source.path):
            tokenizer = AutoTokenizer.from_pretrained(str(source.path), local_files_only=True,
                                                      trust_remote_code=settings.trust_remote_code)
    except ModelLoadFailed:
        raise
    except Exception as exc:  # peft/transformers raise many types for a broken folder
        raise ModelLoadFailed(f"could not load adapter {source.id!r}: {type(exc).__name__}: {exc}") from exc
    refusal = _unsupported(config)
    if refusal:
        raise AdapterNotServable(f"adapter {source.id!r} uses {refusal}")
    rows = base.model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise AdapterNotServable(f"adapter {source.id!r} has {len(tokenizer)} tokens, its base {rows}")
    layers = _lora_layers(source, state_dict, config)
    return AdapterSpec(source, layers, max(a.shape[0] for a, _, _ in layers.values()), tokenizer,
                       sum(t.numel() * t.element_size() for t in state_dict.values()),
                       sum(t.numel() for t in state_dict.values()))


def _unsupported(config) -> str | None:
    if config.use_dora:
        return "DoRA"
    if config.bias != "none":
        return f"LoRA biases ({config.bias})"
    if config.rank_pattern or config.alpha_pattern:
        return "per-layer ranks or alphas"
    if config.modules_to_save or getattr(config, "trainable_token_indices", None):
        return "trained embedding rows or modules_to_save"
    return None


def _lora_layers(source: ModelSource, state_dict: dict, config) -> dict[str, tuple]:
    """{module path: (A, B, scale)} from peft's saved keys `base_model.model.<path>.lora_A.weight`."""
    layers: dict[str, tuple] = {}
    for key, tensor in state_dict.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise AdapterNotServable(f"adapter {source.id!r} holds {key} (not a LoRA matrix)")
            continue
        path = key.removesuffix(".lora_A.weight").removeprefix(PEFT_PREFIX)
        lora_b = state_dict.get(key.replace(".lora_A.", ".lora_B."))
        if lora_b is None:
            raise ModelLoadFailed(f"adapter {source.id!r}: {key} has no lora_B")
        rank = tensor.shape[0]
        scale = config.lora_alpha / (math.sqrt(rank) if config.use_rslora else rank)
        layers[path] = (tensor, lora_b, scale)
    if not layers:
        raise ModelLoadFailed(f"adapter {source.id!r} holds no LoRA matrices")
    return layers


def _load_weights(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def attach(base: LoadedModel, spec: AdapterSpec, name: str) -> AdapterLane:
    """Add `spec` to `base`'s model as adapter `name` (on the engine thread, between two steps) and return its
    lane; blocks the calling (worker) thread until done. Raises ModelLoadFailed or EngineClosed."""
    from matelix.inference.multi_lora import LoraSlots

    engine = base.engine

    def add() -> None:
        slots = engine.lora or LoraSlots()
        slots.add(engine.model, name, spec.layers, spec.rank)
        engine.lora = slots

    try:
        engine.between_steps(add).result()
    except EngineClosed:
        raise
    except Exception as exc:  # an adapter whose layers the base does not have, or not as Linear layers
        raise ModelLoadFailed(f"could not attach adapter {spec.source.id!r} to {base.id!r}: "
                              f"{type(exc).__name__}: {exc}") from exc
    tokenizer = spec.tokenizer

    def text_stream(params, prompt_ids):
        return TextStream(tokenizer, params.stop, prompt_ids, skip_special_tokens=params.skip_special_tokens)

    vocab = len(tokenizer)
    limit = vocab if vocab < engine.vocab_size else None
    route = Route(name, text_stream, frozenset(stop_token_ids(tokenizer, base.model)), limit)
    return AdapterLane(engine, route, base.context_length)


def detach(base: LoadedModel, lane: AdapterLane) -> None:
    """Remove `lane`'s adapter from the base model once no request uses it; worker thread (waits for the
    engine). The lane must be closed first, so nothing new arrives."""
    engine = base.engine

    def remove() -> bool:
        if lane.route.adapter in engine.routes_in_use():
            return False
        engine.lora.remove(engine.model, lane.route.adapter)
        return True

    try:
        while not engine.between_steps(remove).result():
            lane.wait_idle(timeout=1.0)
    except EngineClosed:
        pass  # the base itself was unloaded: nothing left to remove


class AdapterLane:
    """The engine of an adapter's `LoadedModel`: the base's engine with this adapter's route on every request,
    and the adapter's own request counts."""

    def __init__(self, engine, route: Route, context_length: int):
        self.base_engine = engine
        self.route = route
        self.context_length = context_length
        self.prefix_cache = None  # the base engine's cache serves every adapter (keyed by adapter)
        self._lock = threading.Condition()
        self._in_flight: set[RequestHandle] = set()
        self._closed = False
        self.completed_count = 0
        self.cancelled_count = 0
        self.shared_prefill_requests = 0  # shared prefills run (and count) in the base engine

    @property
    def vocab_size(self) -> int:
        return self.base_engine.vocab_size

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active_count(self) -> int:
        return len(self._in_flight)

    queued_count = 0  # queued requests wait in the base engine and count there

    def kv_cache_bytes(self) -> int:
        return 0  # the rows' keys/values live in the base engine's cache

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> RequestHandle:
        return self.submit_many(prompt_ids, params, 1)[0]

    def submit_many(self, prompt_ids: list[int], params: SamplingParams, n: int) -> list[RequestHandle]:
        """Queue `n` choices on the base engine through this adapter; EngineClosed once the lane is closed."""
        with self._lock:
            if self._closed:
                raise EngineClosed(f"adapter {self.route.adapter!r} was unloaded")
            handles = self.base_engine.submit_many(prompt_ids, params, n, route=self.route)
            self._in_flight.update(handles)
        for handle in handles:
            handle.add_done_callback(self._finished)
        return handles

    def _finished(self, handle: RequestHandle, event: GenerationEvent) -> None:
        with self._lock:
            self._in_flight.discard(handle)
            self.completed_count += event.finish_reason in ("stop", "length", "cancelled")
            self.cancelled_count += event.finish_reason == "cancelled"
            self._lock.notify_all()

    def close_if_idle(self) -> bool:
        """Close the lane when no request of it is in flight (LRU eviction takes idle adapters only)."""
        with self._lock:
            if self._in_flight:
                return False
            self._closed = True
            return True

    def close(self, *, drain_s: float = 0.0) -> None:
        """Refuse new requests; requests still running after `drain_s` seconds are cancelled."""
        with self._lock:
            self._closed = True
            if drain_s > 0:
                self._lock.wait_for(lambda: not self._in_flight, timeout=drain_s)
            running = list(self._in_flight)
        for handle in running:
            handle.cancel()

    def wait_idle(self, timeout: float) -> None:
        with self._lock:
            self._lock.wait_for(lambda: not self._in_flight, timeout=timeout)


@dataclass(eq=False)
class AdapterModel(LoadedModel):
    """A resident adapter: `engine` is its lane on the base's engine; size and parameters are the adapter's."""

    adapter_bytes: int = 0
    adapter_parameters: int = 0

    def parameter_count(self) -> int:
        return self.adapter_parameters

    def memory_bytes(self) -> int:
        return self.adapter_bytes
