"""Samples to training examples: render, tokenize, mask, cut to `chunk_size`; ordering and thread-safe
train/eval splits.

Each example is `{"input_ids": [...], "labels": [...]}` with -100 on every untrained position. Label 0 of
an example is always -100 (no token predicts it), which is also what keeps packed samples from learning
across their boundary.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from matelix.data.render import Rendered, eos_of, render_spans, template_style
from matelix.data.samples import Sample
from matelix.data.template import ROLE_TOKENS, render_message

IGNORE = -100
ENCODE_BATCH = 512
# Context kept in front of an answer that is longer than chunk_size by itself.
ANSWER_CONTEXT_FRACTION = 4
LENGTH_GROUP_SIZE = 64


@dataclass
class TokenizedDataset:
    """Examples plus counts: samples in, examples out, samples cut to chunk_size, samples dropped (nothing
    left to train), tokens and trained tokens. `rows[i]` is the data row of `examples[i]`."""

    examples: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)


def _encode(texts: list[str], tokenizer) -> list[tuple[list[int], object]]:
    """Token ids and the backend encoding (for char -> token lookups) of each text."""
    encs = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    return [(e.ids, e) for e in encs]


def _token_span(ids: list[int], enc, r: Rendered) -> tuple[int, int]:
    """`[a, b)` token indices covering the trained character span of `r`."""
    n = len(ids)
    if r.start >= r.end:
        return n, n
    a = enc.char_to_token(r.start)
    b = enc.char_to_token(r.end - 1)
    if a is None or b is None:
        offsets = enc.offsets
        a = next((i for i, (_, e) in enumerate(offsets) if e > r.start), n)
        b = next((i for i in range(n - 1, -1, -1) if offsets[i][0] < r.end), -1)
    return a, b + 1


def _slow_ids_and_span(tokenizer, r: Rendered) -> tuple[list[int], int, int]:
    """For tokenizers without a Rust backend: encode the three parts separately."""
    parts = [tokenizer.encode(t, add_special_tokens=False) if t else []
             for t in (r.text[:r.start], r.text[r.start:r.end], r.text[r.end:])]
    return parts[0] + parts[1] + parts[2], len(parts[0]), len(parts[0]) + len(parts[1])


def _messages_tokenize_alone(tokenizer, style: str) -> bool:
    """True when a MaTeLiX-rendered text tokenizes as the concatenation of its messages tokenized alone.

    Every message starts with a role token; when those are added tokens the tokenizer splits the text at
    them before anything else, so no token spans two messages. Threads repeat their history in every
    sample, so tokenizing each distinct message once saves most of the work.
    """
    if style not in ("chat", "dialogplus"):
        return False
    added = tokenizer.get_added_vocab()
    return all(token in added for token in ROLE_TOKENS.values())


def _spans_by_message(batch: list[Sample], tokenizer, style: str, train_on_prompt: bool,
                      cache: dict[str, tuple[list[int], int, int]]) -> list[tuple[list[int], int, int]]:
    """`(ids, a, b)` per sample from cached per-message token ids; `[a, b)` is the final answer's span."""
    eos = eos_of(tokenizer)
    mode = "dialogplus" if style == "dialogplus" else "chat"
    texts = [[render_message(m["role"], m["content"], eos, mode) for m in s.messages] for s in batch]
    new = list({t for msgs in texts for t in msgs if t not in cache})
    for text, (ids, enc) in zip(new, _encode(new, tokenizer), strict=True):
        # The trained part of a message in final position: after `<|Role|>\n`, up to and including EOS.
        head = text.index("\n") + 1
        a, b = _token_span(ids, enc, Rendered(text, head, len(text.rstrip("\n"))))
        cache[text] = (ids, a, b)
    out = []
    for msgs in texts:
        ids: list[int] = []
        for text in msgs[:-1]:
            ids += cache[text][0]
        last_ids, a, b = cache[msgs[-1]]
        offset = len(ids)
        ids += last_ids
        out.append((ids, 0, len(ids)) if train_on_prompt else (ids, offset + a, offset + b))
    return out


def _windows(n: int, a: int, b: int, chunk_size: int) -> list[tuple[int, int]]:
    """Token windows `[s, e)` of at most chunk_size over a text of n tokens with trained tokens `[a, b)`,
    `a >= 1`. Each window holds trained labels at window position >= 1 (position 0 is never predicted)."""
    if n <= chunk_size:
        return [(0, n)]
    if b - a < chunk_size:
        # Left truncation: the whole trained span plus as much of the history before it as fits.
        e = min(n, a - 1 + chunk_size)
        return [(e - chunk_size, e)]
    start = a - 1 - min(a - 1, chunk_size // ANSWER_CONTEXT_FRACTION)
    out = []
    # Consecutive windows overlap by one token: a window's first token is never predicted, so the overlap
    # lets every trained token be predicted exactly once.
    for s in range(start, b - 1, chunk_size - 1):
        e = min(s + chunk_size, n)
        if min(b, e) - max(a, s + 1) > 0:
            out.append((s, e))
    return out


def token_spans(samples: list[Sample], tokenizer, *, template_mode: str, train_on_prompt: bool = False
                ) -> Iterator[tuple[Sample, list[int], int, int]]:
    """`(sample, ids, a, b)` for every sample: the full token ids and the trained token range `[a, b)`."""
    style = template_style(tokenizer, template_mode)
    fast = getattr(tokenizer, "is_fast", False) and getattr(tokenizer, "backend_tokenizer", None) is not None
    by_message = fast and _messages_tokenize_alone(tokenizer, style)
    cache: dict[str, tuple[list[int], int, int]] = {}
    for lo in range(0, len(samples), ENCODE_BATCH):
        batch = samples[lo:lo + ENCODE_BATCH]
        if by_message and all(s.messages for s in batch):
            spans = _spans_by_message(batch, tokenizer, style, train_on_prompt, cache)
        elif fast:
            rendered = [render_spans(s, tokenizer, style, train_on_prompt=train_on_prompt) for s in batch]
            encoded = _encode([r.text for r in rendered], tokenizer)
            spans = [(ids, *_token_span(ids, enc, r)) for (ids, enc), r in zip(encoded, rendered, strict=True)]
        else:
            rendered = [render_spans(s, tokenizer, style, train_on_prompt=train_on_prompt) for s in batch]
            spans = [_slow_ids_and_span(tokenizer, r) for r in rendered]
        for sample, (ids, a, b) in zip(batch, spans, strict=True):
            yield sample, ids, a, b


def cut_windows(n: int, a: int, b: int, chunk_size: int) -> list[tuple[int, int, int, int]]:
    """`(s, e, lo, hi)` per example of a sample with n tokens trained on `[a, b)`: the window `[s, e)` and
    its trained tokens `[lo, hi)`. Empty when nothing can be trained (label 0 is never predicted)."""
    a = max(a, 1)
    if b <= a:
        return []
    return [(s, e, max(a, s + 1), min(b, e)) for s, e in _windows(n, a, b, chunk_size)]


def tokenize_samples(samples: list[Sample], tokenizer, *, template_mode: str, chunk_size: int = 1024,
                     train_on_prompt: bool = False) -> TokenizedDataset:
    """Render and tokenize `samples` with `tokenizer`'s chat template; labels only on trained spans.

    A sample longer than chunk_size keeps the end of its history (left truncation) when its trained span
    fits, and is split into windows that each keep trained labels when it does not; `stats["cut"]` counts
    both. A sample with nothing left to train is dropped and counted.
    """
    if chunk_size < 2:
        raise ValueError("chunk_size must be at least 2")
    out = TokenizedDataset()
    cut = dropped = tokens = trained = 0
    for sample, ids, a, b in token_spans(samples, tokenizer, template_mode=template_mode,
                                         train_on_prompt=train_on_prompt):
        windows = cut_windows(len(ids), a, b, chunk_size)
        if not windows:
            dropped += 1
            continue
        cut += len(ids) > chunk_size
        for s, e, lo_t, hi_t in windows:
            labels = [IGNORE] * (lo_t - s) + ids[lo_t:hi_t] + [IGNORE] * (e - hi_t)
            out.examples.append({"input_ids": ids[s:e], "labels": labels})
            out.rows.append(sample.row)
            tokens += e - s
            trained += hi_t - lo_t
    out.stats = {"samples": len(samples), "examples": len(out.examples), "cut": cut, "dropped": dropped,
                 "tokens": tokens, "trained_tokens": trained}
    return out


def order_examples(examples: list[dict], *, sort_by_length: bool, shuffle: bool, seed: int) -> list[dict]:
    """Examples in training order: shuffled with `seed`, sorted longest first, or both (shuffled, then
    sorted within groups of LENGTH_GROUP_SIZE so batches hold similar lengths but the order still varies)."""
    order = list(range(len(examples)))
    length = [len(e["input_ids"]) for e in examples]
    if shuffle:
        random.Random(seed).shuffle(order)
        if sort_by_length:
            order = [i for g in range(0, len(order), LENGTH_GROUP_SIZE)
                     for i in sorted(order[g:g + LENGTH_GROUP_SIZE], key=lambda i: -length[i])]
    elif sort_by_length:
        order.sort(key=lambda i: -length[i])
    return [examples[i] for i in order]


def split_by_group(samples: list[Sample], eval_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Train and eval samples; whole groups (threads) go to one side, about `eval_fraction` of samples to
    eval. With at least two groups and a positive fraction, each side gets at least one group."""
    if not 0 <= eval_fraction < 1:
        raise ValueError("eval_fraction must be in [0, 1)")
    sizes: dict[str, int] = {}
    for s in samples:
        sizes[s.group] = sizes.get(s.group, 0) + 1
    groups = sorted(sizes)
    if eval_fraction == 0 or len(groups) < 2:
        return list(samples), []
    random.Random(seed).shuffle(groups)
    target = eval_fraction * len(samples)
    chosen: set[str] = set()
    taken = 0
    for g in groups[:-1]:
        if taken >= target:
            break
        chosen.add(g)
        taken += sizes[g]
    train = [s for s in samples if s.group not in chosen]
    evals = [s for s in samples if s.group in chosen]
    return train, evals
