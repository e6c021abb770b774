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


def _fill_rows(weight: torch.Tensor, old_rows: int, sources: dict[int, list[int]]) -> None:
    """Set rows old_rows.. of `weight` (V, H) to the mean of their source rows, else the mean of all old rows."""
    with torch.no_grad():
        old = weight[:old_rows].float()
        fallback = old.mean(dim=0)
        for new_id in range(old_rows, weight.shape[0]):
            ids = [i for i in sources.get(new_id, ()) if 0 <= i < old_rows]
            row = old[ids].mean(dim=0) if ids else fallback
            weight[new_id] = row.to(weight.dtype)


def resize_with_mean_init(model, new_vocab_size: int, sources: dict[int, list[int]] | None = None) -> None:
    """Resize token embeddings (and an untied head) to `new_vocab_size`; mean-initialise the new rows.

    `sources` maps a new token id to the old token ids it replaces. Shrinking or keeping the size only
    resizes. Works on a plain transformers model or a peft-wrapped one (resize before wrapping in LoRA
    when possible: a wrapper's saved-module copies are not resized by transformers).
    """
    base = _base_model(model)
    old_rows = base.get_input_embeddings().weight.shape[0]
    base.resize_token_embeddings(new_vocab_size, mean_resizing=False)
    if new_vocab_size <= old_rows:
        return
    sources = sources or {}
    _fill_rows(base.get_input_embeddings().weight, old_rows, sources)
    if not _is_tied(base):
        _fill_rows(base.get_output_embeddings().weight, old_rows, sources)
