"""Keep only the phrases the model itself reads well: a check of mined phrases against the base model.

A new phrase token starts as the mean of its pieces' embedding rows (`embeddings.resize_with_mean_init`).
For some phrases the base model predicts and reads that row about as well as the pieces, or better (long
words a model splits into many pieces); for others (short function words: " wird", " oder", markup such as
"\n```") one averaged row stands where the model relied on the exact tokens, and every occurrence costs it.
On SmolLM2 and the German `demo_chat` answers, all 267 mined phrases raised the held-out loss per character
by 11%; the 111 this check keeps by 1.2%.

The check: the base model reads a sample of the mined texts (about `ngrams.screen_tokens` tokens, chosen so
that every phrase occurs in it a few times) once as it tokenises them today and once with all phrases added
(rows grown temporarily, then shrunk back). For each occurrence of a phrase, the loss of the phrase token and
of the token after it is compared with the loss of the same characters under today's tokens (the window
ends where both tokenisations have a token edge). A phrase is kept when its occurrences get cheaper by at
least `MARGIN` nats on average: it is judged on a sample, so it must win clearly, not break even.

Written here because no library scores added tokens against a model's own predictions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer

from matelix.data.packing import right_padded
from matelix.training.embeddings import _base_model, resize_with_mean_init

MARGIN = 0.5  # nats an occurrence must get cheaper on average for its phrase to be kept
PER_PHRASE = 4  # occurrences of each phrase the sample tries to hold
BATCH_TOKENS = 1024  # tokens per forward pass (rows padded to the longest): 200 MB of logits at 49k words


def _pick(encoded: list, lengths: list[int], phrase_ids: set[int], max_tokens: int) -> list[int]:
    """Indices of texts holding about `PER_PHRASE` occurrences of each phrase (`encoded`: with the phrases)
    within `max_tokens` tokens (`lengths`: without them, the longer reading), in a seeded order spread over
    the dataset."""
    order = list(range(len(encoded)))
    random.Random(0).shuffle(order)
    seen: dict[int, int] = {}
    chosen, total = [], 0
    for i in order:
        ids = [t for t in encoded[i].ids if t in phrase_ids]
        if not any(seen.get(t, 0) < PER_PHRASE for t in ids):
            continue
        if total + lengths[i] > max_tokens and chosen:
            continue
        chosen.append(i)
        total += lengths[i]
        for t in ids:
            seen[t] = seen.get(t, 0) + 1
    return chosen


def _token_losses(model, rows: list[list[int]]) -> list[np.ndarray]:
    """Per-token loss of each row (position 0 gets 0: nothing predicts it), in batches of padded rows."""
    device = next(model.parameters()).device
    out: list[np.ndarray | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end - start + 1) * len(rows[order[end]]) <= BATCH_TOKENS:
            end += 1
        batch = [rows[i] for i in order[start:end]]
        ids, mask = right_padded(batch)
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
            logits = logits[:, :-1].float()
            nll = (torch.logsumexp(logits, dim=-1)
                   - logits.gather(2, ids[:, 1:, None].to(device)).squeeze(2)).cpu()
            del logits
        for j, i in enumerate(order[start:end]):
            out[i] = np.concatenate([[0.0], nll[j, :len(batch[j]) - 1].numpy()])
        start = end
    return out  # type: ignore[return-value]


def _harm(old_enc, old_nll: np.ndarray, new_enc, new_nll: np.ndarray, phrase_ids: set[int],
          into: dict[int, list[float]]) -> None:
    """Loss change (new − old, nats) of each phrase occurrence in one text, appended to `into[token id]`."""
    old_end_cum: dict[int, float] = {}  # old loss up to and including the token ending at a character
    old_start_cum: dict[int, float] = {}  # old loss before the token starting at a character
    cum = 0.0
    for (start, end), loss in zip(old_enc.offsets, old_nll, strict=True):
        old_start_cum.setdefault(start, cum)
        cum += float(loss)
        old_end_cum[end] = cum
    new_cum = np.cumsum(new_nll)
    ids, offsets = new_enc.ids, new_enc.offsets
    for j in range(1, len(ids)):
        if ids[j] not in phrase_ids:
            continue
        k = min(j + 1, len(ids) - 1)  # the token after the phrase: what the model reads the phrase for
        while k < len(ids) - 1 and offsets[k][1] not in old_end_cum:
            k += 1
        start, end = offsets[j][0], offsets[k][1]
        if start not in old_start_cum or end not in old_end_cum:
            continue
        into.setdefault(ids[j], []).append(
            float(new_cum[k] - new_cum[j - 1]) - (old_end_cum[end] - old_start_cum[start]))


def _copy(backend: Tokenizer) -> Tokenizer:
    """A copy of a tokenizers backend that encodes each text whole (no padding, no truncation)."""
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def screen_phrases(model, tokenizer, texts: Sequence[str], phrases: list, max_tokens: int,
                   log: Callable[[str], None] = print) -> tuple[list, dict[str, float]]:
    """The phrases (`ngrams.Phrase`) whose occurrences the base `model` reads more cheaply as one mean-
    initialised token, and each checked phrase's mean loss change per occurrence (nats, by text).

    `model` is left as it was (rows are added for the check and removed again)."""
    if not phrases or max_tokens <= 0:
        return list(phrases), {}
    from matelix.training.ngrams import _added_token  # ngrams imports this module

    old_tok, scratch = _copy(tokenizer.backend_tokenizer), _copy(tokenizer.backend_tokenizer)
    scratch.add_tokens([_added_token(p.text) for p in phrases])
    new_id = {p.text: scratch.token_to_id(p.text) for p in phrases}
    phrase_ids = set(new_id.values())
    lengths = [len(e.ids) for e in old_tok.encode_batch_fast(list(texts), add_special_tokens=False)]
    chosen = _pick(scratch.encode_batch_fast(list(texts), add_special_tokens=False), lengths, phrase_ids,
                   max_tokens)
    if not chosen:
        return [], {}
    old_encoded = old_tok.encode_batch([texts[i] for i in chosen], add_special_tokens=False)
    new_encoded = scratch.encode_batch([texts[i] for i in chosen], add_special_tokens=False)  # with offsets
    log(f"n-grams: checking {len(phrases)} phrases with the model on {len(chosen)} texts"
        f" ({sum(len(e.ids) for e in old_encoded)} tokens)")

    base = _base_model(model)
    embedding = base.get_input_embeddings().weight
    old_rows = embedding.shape[0]
    needed = max(phrase_ids) + 1
    spare = {i: embedding[i].detach().clone() for i in phrase_ids if i < old_rows}  # padded, untrained rows
    head = base.get_output_embeddings()
    spare_head = {i: head.weight[i].detach().clone() for i in phrase_ids if i < old_rows} \
        if head is not None and head.weight is not embedding else {}
    was_training = base.training
    base.eval()
    try:
        old_nll = _token_losses(base, [e.ids for e in old_encoded])
        resize_with_mean_init(base, max(needed, old_rows), {new_id[p.text]: p.source_ids for p in phrases})
        new_nll = _token_losses(base, [e.ids for e in new_encoded])
    finally:
        if base.get_input_embeddings().weight.shape[0] != old_rows:
            base.resize_token_embeddings(old_rows, mean_resizing=False)
        with torch.no_grad():
            for i, row in spare.items():
                base.get_input_embeddings().weight[i] = row
            for i, row in spare_head.items():
                base.get_output_embeddings().weight[i] = row
        base.train(was_training)
    harm: dict[int, list[float]] = {}
    for o, on, n, nn in zip(old_encoded, old_nll, new_encoded, new_nll, strict=True):
        _harm(o, on, n, nn, phrase_ids, harm)
    # rounded: the processes of a multi-process run decide alike though their sums differ in the last bits
    change = {p.text: round(float(np.mean(harm[new_id[p.text]])), 2) for p in phrases if new_id[p.text] in harm}
    kept = [p for p in phrases if change.get(p.text, 0.0) <= -MARGIN]
    log(f"n-grams: the model reads {len(kept)} of {len(phrases)} phrases at least {MARGIN} nats cheaper than"
        f" their pieces; the others are left out")
    return kept, change
