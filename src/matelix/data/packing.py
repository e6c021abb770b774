"""Packing examples into rows of up to chunk_size tokens, and the collators for packed and padded batches.

A packed row concatenates whole examples; `position_ids` restart at 0 for each. Batches carry no attention
mask: with sdpa attention, no mask and no KV cache, transformers builds a block-diagonal causal mask from
restarting `position_ids`, so no example attends to another (the model must run with `use_cache=False`,
as HF Trainer does in training). Each example's first label is -100, so no loss crosses a boundary.
"""

from __future__ import annotations

import bisect
from itertools import islice

IGNORE = -100


def pack_examples(examples: list[dict], chunk_size: int) -> list[dict]:
    """Rows `{"input_ids", "labels", "position_ids"}` of whole examples, at most chunk_size tokens each.

    Best-fit decreasing: longest examples first, each into the fullest row it still fits (deterministic;
    ties keep the input order). Examples longer than chunk_size get a row of their own.
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    members: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, row index), ascending
    for i in order:
        size = len(examples[i]["input_ids"])
        at = bisect.bisect_left(free, (size, -1))
        if at < len(free):
            room, row = free.pop(at)
            members[row].append(i)
            room -= size
        else:
            row, room = len(members), chunk_size - size
            members.append([i])
        if room > 0:
            bisect.insort(free, (room, row))
    rows = []
    for group in members:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for i in group:
            ex = examples[i]
            input_ids += ex["input_ids"]
            labels.append(IGNORE)
            labels += islice(ex["labels"], 1, None)
            position_ids += range(len(ex["input_ids"]))
        rows.append({"input_ids": input_ids, "labels": labels, "position_ids": position_ids})
    return rows


class PackedCollator:
    """Packed rows -> `input_ids`, `labels`, `position_ids` tensors (B, T), no attention mask.

    Shorter rows are filled up with `pad_token_id` (label -100) as one more sequence whose positions count
    from 0, so the filler never shares a block with real tokens.
    """

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, positions = [], [], []
        for r in rows:
            fill = width - len(r["input_ids"])
            ids.append(list(r["input_ids"]) + [self.pad_token_id] * fill)
            labels.append(list(r["labels"]) + [IGNORE] * fill)
            pos = r.get("position_ids") or range(len(r["input_ids"]))
            positions.append(list(pos) + list(range(fill)))
        return {"input_ids": torch.tensor(ids, dtype=torch.long),  # (B, T)
                "labels": torch.tensor(labels, dtype=torch.long),
                "position_ids": torch.tensor(positions, dtype=torch.long)}


class PaddedCollator:
    """Unpacked examples -> right-padded `input_ids`, `attention_mask`, `labels` (-100 on padding)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids, mask, labels = [], [], []
        for e in examples:
            fill = width - len(e["input_ids"])
            ids.append(list(e["input_ids"]) + [self.pad_token_id] * fill)
            mask.append([1] * len(e["input_ids"]) + [0] * fill)
            labels.append(list(e["labels"]) + [IGNORE] * fill)
        return {"input_ids": torch.tensor(ids, dtype=torch.long),  # (B, T)
                "attention_mask": torch.tensor(mask, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}


def right_padded(rows: list[list[int]], pad_id: int = 0):
    """`(input_ids, attention_mask)` (B, T) long tensors of `rows`, each padded on the right to the longest."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask
