"""The LoRA adapter of a run, alone: `adapter_config.json` + `adapter_model.safetensors` (peft's format,
which vLLM's LoRA loader reads too) and the tokenizer, with the base named so others can find it.

The run stores the base as an absolute server path; the export names it relative to the lab's home
(`models/<name>`) or by its hub id, and records where it was found. vLLM loads LoRA adapters only without
`modules_to_save`; an adapter that trained the embeddings in full (new tokens) is marked as such.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from matelix.catalog import read_json
from matelix.export.hf import save_tokenizer
from matelix.paths import relative_to_home

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterExportError(ValueError):
    """The run has no adapter to export (message says why)."""


def base_name(base_ref: str, base_path: Path | None, home: Path) -> str:
    """The base as others should know it: `models/<name>` under home, else the hub id the run used."""
    return relative_to_home(base_path, home) if base_path is not None else base_ref


def write_adapter(run_path: Path, tokenizer, out: Path, base: str) -> dict:
    """Copy the run's adapter into the empty folder `out`, naming `base`; returns facts for the record."""
    config = read_json(run_path / "adapter_config.json")
    weights = next((run_path / f for f in ADAPTER_FILES if (run_path / f).is_file()), None)
    if not config or weights is None:
        raise AdapterExportError("the run folder holds no adapter_config.json and adapter weights")
    out.mkdir(parents=True, exist_ok=True)
    config["base_model_name_or_path"] = base
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shutil.copy2(weights, out / weights.name)
    save_tokenizer(tokenizer, out)
    saved = config.get("modules_to_save") or []
    return {"base_model": base, "peft_type": config.get("peft_type"), "r": config.get("r"),
            "target_modules": config.get("target_modules"), "modules_to_save": saved,
            "vllm_compatible": not saved,
            "vllm_note": None if not saved else "vLLM's LoRA loader refuses modules_to_save (this adapter "
                                                "trains the embeddings in full for its new tokens)"}
