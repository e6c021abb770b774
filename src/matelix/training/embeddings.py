"""Grow a model's vocabulary and initialise the new rows from the tokens they stand for.

A new token that replaces a phrase starts from the mean of the phrase's token embeddings, so the model's
first guess about it is close to what it already knows about the phrase. Tokens without a source (role and
pad tokens) start from the mean of all old rows, which keeps their logits unremarkable until trained.
"""

from __future__ import annotations

import torch


def _base_model(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _is_tied(model) -> bool:
    head = model.get_output_embeddings()
    if head is None:
        return True
    return head.weight is model.get_input_embeddings().weight or (
        head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr())


def _fill_rows(weight: torch.Tensor, old_rows: int, rows: list[int], sources: dict[int, list[int]]) -> None:
    """Set `rows` of `weight` (V, H) to the mean of their source rows, else to the mean of all old rows."""
    with torch.no_grad():
        old = weight[:old_rows].float()
        fallback = old.mean(dim=0)
        for new_id in rows:
            ids = [i for i in sources.get(new_id, ()) if 0 <= i < old_rows]
            row = old[ids].mean(dim=0) if ids else fallback
            weight[new_id] = row.to(weight.dtype)


def resize_with_mean_init(model, new_vocab_size: int, sources: dict[int, list[int]] | None = None) -> None:
    """Resize token embeddings (and an untied head) to `new_vocab_size`; mean-initialise the new rows.

    `sources` maps a new token id to the old token ids it replaces. Ids in `sources` below the old size are
    initialised too: models whose embedding is padded beyond their tokenizer give new tokens rows that
    exist already but were never trained. Works on a plain transformers model or a peft-wrapped one
    (resize before wrapping in LoRA when possible: a wrapper's saved-module copies are not resized by
    transformers).
    """
    base = _base_model(model)
    old_rows = base.get_input_embeddings().weight.shape[0]
    base.resize_token_embeddings(new_vocab_size, mean_resizing=False)
    sources = sources or {}
    rows = sorted({*range(old_rows, new_vocab_size), *(i for i in sources if 0 <= i < new_vocab_size)})
    if not rows:
        return
    _fill_rows(base.get_input_embeddings().weight, old_rows, rows, sources)
    if not _is_tied(base):
        _fill_rows(base.get_output_embeddings().weight, old_rows, rows, sources)
