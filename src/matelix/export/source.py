"""The model of a finished run, loaded the way the lab serves it: a full or merged folder as is, an adapter
run onto its base and merged (fp32 on the CPU). This is the reference every export is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matelix.catalog import read_json, resolve_model_ref
from matelix.settings import Settings


class SourceError(ValueError):
    """The run holds no model that can be exported (message says why)."""


@dataclass
class RunModel:
    """A run's tokenizer and model (merged), plus what the export needs to know about where it came from."""

    tokenizer: object
    model: object
    kind: str  # "full" | "adapter"
    base_ref: str | None = None  # the adapter's base as the run names it
    base_path: Path | None = None  # that base resolved under home (None for a hub id)


def adapter_base(run_path: Path, settings: Settings) -> tuple[str, Path | str]:
    """The base an adapter run names, and where it lies (a local folder, or a hub id)."""
    ref = read_json(run_path / "adapter_config.json").get("base_model_name_or_path")
    if not isinstance(ref, str) or not ref:
        raise SourceError("adapter_config.json names no base model")
    return ref, resolve_model_ref(ref, settings)


def load_run_model(run_path: Path, settings: Settings) -> RunModel:
    """The run's model in fp32, merged when it is an adapter (exactly what `/chat` serves)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True, "trust_remote_code": settings.trust_remote_code}
    if (run_path / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(run_path), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(run_path), dtype=torch.float32, **kwargs)
        return RunModel(tokenizer, model.eval(), "full")
    if not (run_path / "adapter_config.json").is_file():
        raise SourceError("the run has no final model yet (no config.json or adapter_config.json)")
    from peft import PeftModel

    ref, base = adapter_base(run_path, settings)
    tokenizer = AutoTokenizer.from_pretrained(str(run_path), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(model, str(run_path)).merge_and_unload()
    return RunModel(tokenizer, model.eval(), "adapter", ref, base if isinstance(base, Path) else None)
