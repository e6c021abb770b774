"""Loading one model for serving: a merged/full model folder, a LoRA adapter run (base + adapter), or a hub id.

`load_model(source, device, settings, resolve_base)` runs on a worker thread (it takes seconds) and returns
a `LoadedModel`: tokenizer, model in eval mode, its running `Engine`, context length and stop tokens.

An adapter run loaded here is merged into its base (`merge_and_unload`): `bench/lora_serving.py` measured the
merged model decoding faster than the unmerged adapter (the LoRA matmuls and the peft wrapper cost time
on every step). The registry loads it this way only when it is the one fine-tune of its base in use; several
adapters of one base share that base instead (`inference/adapters.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from matelix.catalog import read_json
from matelix.inference.chat import render_chat, stop_token_ids
from matelix.inference.detokenize import TextStream
from matelix.inference.engine import Engine
from matelix.inference.quantize import opaque_weight_bytes, quantize_for_serving
from matelix.remote_code import needs_remote_code, remote_code_message
from matelix.settings import Settings

DEFAULT_CONTEXT_LENGTH = 2048
# A tokenizer's model_max_length above this is the "unset" sentinel transformers uses, not a real limit.
UNSET_MAX_LENGTH = 10**8


class ModelLoadFailed(RuntimeError):
    """The folder or repo could not be loaded as a causal LM (message says why)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from. `id` is the user-facing name: run id, `models/<name>`, or a hub repo id."""

    id: str
    kind: str  # "model" | "adapter" | "hub"
    path: Path | None = None
    display_path: str | None = None  # relative to home; never an absolute server path
    checkpoint_step: int | None = None  # `run@checkpoint-N` / `run@latest`: the checkpoint's step


@dataclass(eq=False)
class LoadedModel:
    """A resident model, as route adapters use it."""

    id: str
    source: ModelSource
    tokenizer: object
    model: object
    engine: Engine
    device: str
    dtype: str
    context_length: int
    stop_token_ids: frozenset[int]
    load_seconds: float
    base_model: str | None = None
    quantization: str = "none"  # settings.Quantization: "none" | "int8" | "fp16" (see inference/quantize.py)
    served_as: str = "model"  # "model" | "merged" (adapter merged into its own copy) | "adapter" (on a shared base)
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)

    def render_chat(self, messages: list, system: str | None = None) -> list[int]:
        """Prompt ids for chat messages (see `matelix.inference.chat.render_chat`)."""
        return render_chat(self.tokenizer, messages, system)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Prompt ids for plain text (completions); BOS is added when the tokenizer is configured to."""
        return self.tokenizer(text, add_special_tokens=add_special_tokens, verbose=False)["input_ids"]

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) + \
            sum(b.numel() * b.element_size() for b in self.model.buffers()) + opaque_weight_bytes(self.model)

    def info(self) -> dict:
        """What `/inference_status` shows for this model."""
        return {"id": self.id, "kind": self.source.kind, "path": self.source.display_path,
                "base_model": self.base_model, "device": self.device, "dtype": self.dtype,
                "quantization": self.quantization, "served_as": self.served_as,
                "context_length": self.context_length, "parameters": self.parameter_count(),
                "memory_bytes": self.memory_bytes(), "kv_cache_bytes": self.engine.kv_cache_bytes(),
                **_prefix_cache_info(self.engine.prefix_cache),
                "shared_prefill_requests": self.engine.shared_prefill_requests,
                "active_requests": self.engine.active_count, "queued_requests": self.engine.queued_count,
                "completed_requests": self.engine.completed_count,
                "cancelled_requests": self.engine.cancelled_count,
                "load_seconds": round(self.load_seconds, 3),
                "loaded_at": self.loaded_at, "last_used": self.last_used}


def _prefix_cache_info(cache) -> dict:
    if cache is None:
        return {"prefix_cache_bytes": 0, "prefix_cache_hits": 0, "prefix_cache_reused_tokens": 0}
    return {"prefix_cache_bytes": cache.nbytes, "prefix_cache_hits": cache.hits,
            "prefix_cache_reused_tokens": cache.reused_tokens}


def _context_length(model, tokenizer) -> int:
    config = model.config
    candidates = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions", "max_seq_len",
                                                     "seq_length")]
    limits = [c for c in candidates if isinstance(c, int) and c > 0]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < UNSET_MAX_LENGTH:
        limits.append(tok_max)
    return min(limits) if limits else DEFAULT_CONTEXT_LENGTH


def has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))


def _refuse_remote_code(source: ModelSource, trust: bool) -> None:
    if not trust and source.path is not None and needs_remote_code(source.path):
        raise ModelLoadFailed(remote_code_message(source.id))


def load_model(source: ModelSource, device: str, settings: Settings,
               resolve_base: Callable[[str], ModelSource], quantization: str = "none") -> LoadedModel:
    """Load `source` onto `device` (weights quantized as `quantization` says) and start its engine. Raises
    ModelLoadFailed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    trust = settings.trust_remote_code
    dtype = torch.float32 if device == "cpu" else "auto"
    hub_kwargs = {"trust_remote_code": trust, "local_files_only": settings.offline or source.kind != "hub"}
    base_model = None
    _refuse_remote_code(source, trust)
    try:
        if source.kind == "adapter":
            from peft import PeftModel

            config = read_json(source.path / "adapter_config.json")
            base_ref = config.get("base_model_name_or_path")
            if not isinstance(base_ref, str) or not base_ref:
                raise ModelLoadFailed(f"{source.id}: adapter_config.json names no base model")
            base = resolve_base(base_ref)
            _refuse_remote_code(base, trust)
            base_model = base.id
            base_location = str(base.path) if base.path else base.id
            tok_location = str(source.path) if has_tokenizer(source.path) else base_location
            tokenizer = AutoTokenizer.from_pretrained(tok_location, **hub_kwargs)
            model = AutoModelForCausalLM.from_pretrained(base_location, dtype=dtype, **hub_kwargs)
            if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
                model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
            model = PeftModel.from_pretrained(model, str(source.path)).merge_and_unload()
        else:
            location = str(source.path) if source.path else source.id
            tokenizer = AutoTokenizer.from_pretrained(location, **hub_kwargs)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, **hub_kwargs)
    except ModelLoadFailed:
        raise
    except Exception as exc:  # transformers/peft raise many types for a broken or foreign folder
        raise ModelLoadFailed(f"could not load model {source.id!r}: {type(exc).__name__}: {exc}") from exc
    model = quantize_for_serving(model.to(device).eval(), quantization)
    context = _context_length(model, tokenizer)
    stops = frozenset(stop_token_ids(tokenizer, model))

    def text_stream(params, prompt_ids):
        return TextStream(tokenizer, params.stop, prompt_ids, skip_special_tokens=params.skip_special_tokens)

    engine = Engine(model, context_length=context, stop_token_ids=stops, text_stream=text_stream, name=source.id,
                    max_batch_size=settings.max_concurrent_generations,
                    prefix_cache_bytes=settings.prefix_cache_mb * 2**20)
    return LoadedModel(id=source.id, source=source, tokenizer=tokenizer, model=model, engine=engine,
                       device=device, dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
                       context_length=context, stop_token_ids=stops,
                       load_seconds=time.perf_counter() - started, base_model=base_model,
                       quantization=quantization, served_as="merged" if source.kind == "adapter" else "model")
