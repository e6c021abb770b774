"""Convert a GGUF file into a Hugging Face model folder (safetensors, tokenizer, chat template).

    matelix import-gguf FILE.gguf --out models/NAME

transformers reads GGUF itself (`from_pretrained(folder, gguf_file=name)`, needing the `gguf` and
`accelerate` packages) and dequantizes the weights to float; this module only checks the architecture
first, makes the result saveable, fixes what the conversion gets wrong, and writes the folder atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from matelix.texts import tr


class GGUFImportError(ValueError):
    """A GGUF file that cannot be imported (the message says why)."""


def gguf_metadata(path: Path) -> dict:
    """The scalar and string fields of a GGUF header (architecture, eos id, ...), read without tensors."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError/struct errors/OSError for broken files
        raise GGUFImportError(tr("{file}: not a readable GGUF file ({reason})", file=path.name,
                                 reason=f"{type(exc).__name__}: {exc}")) from exc
    meta: dict = {}
    for name, field in reader.fields.items():
        if name.startswith("tokenizer.ggml.") and name.split(".")[-1] in ("tokens", "merges", "token_type",
                                                                          "scores"):
            continue
        try:
            meta[name] = field.contents()
        except Exception:  # noqa: BLE001 - a field the reader cannot decode is simply not reported
            continue
    return meta


def supported_architectures() -> set[str]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING)


def check_gguf(path: Path) -> dict:
    """Metadata of `path`, or GGUFImportError when transformers cannot load its architecture."""
    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file")
    meta = gguf_metadata(path)
    arch = meta.get("general.architecture")
    supported = supported_architectures()
    if arch not in supported:
        raise GGUFImportError(tr("{file}: architecture {arch!r} is not supported by transformers' GGUF loader "
                                 "(supported: {supported})", file=path.name, arch=arch,
                                 supported=", ".join(sorted(supported))))
    return meta


def import_gguf(path: Path, out: Path, *, log: Callable[[str], None] = print) -> Path:
    """Convert `path` into the HF folder `out` (written to a temp folder beside it, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    out = Path(out)
    meta = check_gguf(path)
    if (out / "config.json").is_file():
        raise GGUFImportError(f"{out}: a model already exists there")
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"importing {path.name} ({meta.get('general.architecture')}, "
        f"{path.stat().st_size / 2**20:.0f} MiB) -> {out} ...")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # The loaded model is marked "quantized with gguf" and save_pretrained refuses it, although the weights
    # are already plain float tensors: drop the marker so it saves as an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _fix_special_tokens(tokenizer, model, meta, log)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the model folder is an ordinary one
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if model.generation_config is not None:
            model.generation_config.save_pretrained(str(tmp))
        _write_source(tmp, path, meta)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"imported: {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"vocabulary {len(tokenizer):,}, chat template {'yes' if tokenizer.chat_template else 'no'}")
    return out


def _fix_special_tokens(tokenizer, model, meta: dict, log: Callable[[str], None]) -> None:
    """Take EOS/BOS/PAD from the GGUF metadata: the converted tokenizer can name the wrong token (seen:
    SmolLM2's EOS came out as `<|im_start|>` although the file names id 2, `<|im_end|>`)."""
    for role in ("eos", "bos", "padding"):
        token_id = meta.get(f"tokenizer.ggml.{role}_token_id")
        if token_id is None:
            continue
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        attr = "pad_token" if role == "padding" else f"{role}_token"
        if token is not None and getattr(tokenizer, attr, None) != token:
            log(f"{attr}: {getattr(tokenizer, attr, None)!r} -> {token!r} (from the GGUF metadata)")
            setattr(tokenizer, attr, token)
    for config in (model.config, model.generation_config):
        if config is None:
            continue
        config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.bos_token_id is not None:
            config.bos_token_id = tokenizer.bos_token_id
        config.pad_token_id = tokenizer.pad_token_id


def _write_source(folder: Path, path: Path, meta: dict) -> None:
    source = {"imported_from": path.name, "architecture": meta.get("general.architecture"),
              "name": meta.get("general.name"), "license": meta.get("general.license"),
              "file_type": meta.get("general.file_type")}
    (folder / "matelix_source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
