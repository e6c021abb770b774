"""Sentence embeddings from a causal LM: the mean of the last hidden states over the input's tokens,
L2-normalised (what `/v1/embeddings` serves).

    vectors = embed(model, [[1, 2, 3], [4, 5]])    # (2, hidden_size) float32, unit length

It runs the model's base (no LM head, no cache) in batches of right-padded inputs, under
`torch.inference_mode`, on the caller's thread (the server calls it off the event loop). A causal model's
mean-pooled states are a plain baseline, not a trained embedding model; they are what such servers
(llama.cpp, vLLM's pooling for decoder models) offer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from matelix.data.packing import right_padded

BATCH = 16


def hidden_size(model) -> int:
    return int(model.get_input_embeddings().weight.shape[1])


def embed(model, inputs: list[list[int]], batch: int = BATCH) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states (N, H) of every input (each a non-empty id list)."""
    base = getattr(model, model.base_model_prefix, model)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            input_ids, mask = right_padded(inputs[start:start + batch])
            input_ids, mask = input_ids.to(device), mask.to(device)
            states = base(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state.float()
            weights = mask.unsqueeze(-1).float()
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1)
            out.append(F.normalize(pooled, dim=-1).cpu())
    return torch.cat(out)
