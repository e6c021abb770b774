"""A clean Hugging Face folder: weights (safetensors), config, generation config, tokenizer and chat template,
nothing else (no checkpoints, no logs), readable by current transformers and by the 4.x line.

transformers 5 writes two things the 4.x line (pinned by many serving tools) cannot read, so the files are
rewritten after saving: `tokenizer_class: TokenizersBackend` ("does not exist" in 4.x) becomes
`PreTrainedTokenizerFast`, and the `extra_special_tokens` list becomes `additional_special_tokens`
(4.x expects a mapping there). The chat template is written into `tokenizer_config.json` as well as
`chat_template.jinja`, and `config.json` gets the top-level `rope_theta` and `torch_dtype` 4.x reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from matelix.inference.chat import stop_token_ids

PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def tie_embeddings(model) -> str:
    """Keep tied embeddings tied. Returns "tied", "untied" (never tied) or "untied-by-training": a LoRA
    run that trained the input embedding in full (new tokens) leaves the tied head at its old value, so the
    lab's model has two different matrices and tying them again would change its answers."""
    import torch

    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or not getattr(model.config, "tie_word_embeddings", False):
        return "untied"
    if head.weight is embed.weight:
        return "tied"
    if head.weight.shape == embed.weight.shape and torch.equal(head.weight, embed.weight):
        head.weight = embed.weight
        return "tied"
    model.config.tie_word_embeddings = False
    return "untied-by-training"


def _rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def portable_tokenizer_config(data: dict, chat_template: str | None) -> None:
    """Make a transformers-5 `tokenizer_config.json` readable by 4.x as well (in place)."""
    for key in ("backend", "is_local", "local_files_only", "name_or_path"):  # load-time state, not settings
        data.pop(key, None)
    data["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    extra = data.get("extra_special_tokens")
    if isinstance(extra, list):
        del data["extra_special_tokens"]
        merged = [t for t in data.get("additional_special_tokens") or [] if t not in extra]
        data["additional_special_tokens"] = merged + extra
    if chat_template:
        data["chat_template"] = chat_template


def portable_model_config(data: dict) -> None:
    """Add the keys transformers 4.x reads (`rope_theta`, `torch_dtype`) next to the 5.x ones (in place)."""
    rope = data.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        data.setdefault("rope_theta", rope["rope_theta"])
        if rope.get("rope_type", "default") != "default":
            data.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    if "dtype" in data:
        data.setdefault("torch_dtype", data["dtype"])


def write_hf_folder(model, tokenizer, out: Path) -> dict:
    """Save `model` + `tokenizer` into the empty folder `out` in the portable form; returns facts for the
    export record (embedding tying, stop tokens)."""
    out.mkdir(parents=True, exist_ok=True)
    tying = tie_embeddings(model)
    stops = sorted(stop_token_ids(tokenizer, model))
    model.config.use_cache = True
    gen = model.generation_config
    gen.eos_token_id = stops[0] if len(stops) == 1 else stops
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(str(out))
    save_tokenizer(tokenizer, out)
    _rewrite_json(out / "config.json", portable_model_config)
    return {"embeddings": tying, "stop_token_ids": stops, "chat_template": bool(tokenizer.chat_template)}


def save_tokenizer(tokenizer, out: Path) -> None:
    """The tokenizer files in the form transformers 5 and 4.x both read."""
    tokenizer.save_pretrained(str(out))
    template = getattr(tokenizer, "chat_template", None)
    _rewrite_json(out / "tokenizer_config.json", lambda d: portable_tokenizer_config(d, template))
