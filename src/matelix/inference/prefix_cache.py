"""Prefix caching: the keys/values of finished sequences, found again by the longest common token prefix, so a
repeated system prompt or the history of a multi-turn chat is prefilled once.

    cache = PrefixCache(max_bytes=256 * 2**20)
    cache.store(token_ids, [(keys, values), ...])   # one (1, H, T, D) pair per layer, T == len(token_ids)
    hit = cache.lookup(prompt_ids)                   # None, or a PrefixHit reusing hit.length tokens
    cache.store(ids, layers, namespace="lora1")      # keys/values of an adapter only match its own lookups
    hit.layers                                       # [(keys[:, :, :length], values[:, :, :length]), ...]

The engine stores every sequence that ends by itself (prompt + generated tokens that went through the model)
and looks each new prompt up before prefilling it: the next turn of a chat starts with the previous turn's
prompt and answer, so only the new message is prefilled and the time to its first token does not grow with
the conversation. A hit always leaves at least one prompt token to run, since the first new token is sampled
from the logits of the prompt's last position.

Hand-written because no maintained library offers a prefix cache for transformers' `DynamicCache` on the CPU
(vLLM's and SGLang's live inside their own paged-attention engines). Entries are whole sequences kept in least
recently used order within `max_bytes`; an entry that is a prefix of a newer one is dropped, as the newer
one answers every lookup it would. Matching compares token tensors, one vectorised comparison per entry.
Stored tensors are never written: the engine's cache copies them into its own buffers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

MIN_REUSE_TOKENS = 8  # a shorter common prefix is cheaper to prefill again than to look up and copy


@dataclass(frozen=True)
class PrefixHit:
    length: int
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, H, length, D) keys and values


@dataclass(eq=False)
class _Entry:
    tokens: torch.Tensor  # (T,) long
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    nbytes: int
    namespace: str | None = None  # the adapter that computed the keys/values (None: the model itself)


class PrefixCache:
    """Finished sequences' KV, least recently used first, within `max_bytes`."""

    def __init__(self, max_bytes: int, min_tokens: int = MIN_REUSE_TOKENS):
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_key = 0
        self._lock = threading.Lock()  # the engine thread writes; status readers count bytes
        self.nbytes = 0
        self.hits = 0
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt_ids: list[int], namespace: str | None = None) -> PrefixHit | None:
        """The longest stored prefix of `prompt_ids` (at most all but its last token) stored under `namespace`,
        or None below `min_tokens`."""
        limit = len(prompt_ids) - 1
        if limit < self.min_tokens or not self._entries:
            return None
        prompt = torch.tensor(prompt_ids[:limit], dtype=torch.long)
        best_key, best = None, 0
        for key, entry in self._entries.items():
            if entry.namespace != namespace:
                continue
            n = min(limit, entry.tokens.numel())
            differ = (entry.tokens[:n] != prompt[:n]).nonzero()
            common = int(differ[0]) if differ.numel() else n
            if common > best:
                best_key, best = key, common
        if best < self.min_tokens:
            return None
        with self._lock:
            entry = self._entries[best_key]
            self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return PrefixHit(best, [(k[:, :, :best], v[:, :, :best]) for k, v in entry.layers])

    def store(self, token_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]],
              namespace: str | None = None) -> None:
        """Keep the KV of `token_ids` (tensors the caller will not write again); evicts the least recently used
        entries beyond `max_bytes` and every entry this one extends."""
        if len(token_ids) < self.min_tokens:
            return
        nbytes = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in layers)
        if nbytes > self.max_bytes:
            return
        tokens = torch.tensor(token_ids, dtype=torch.long)
        with self._lock:
            for key, entry in list(self._entries.items()):
                n = entry.tokens.numel()
                if entry.namespace == namespace and n <= tokens.numel() and torch.equal(entry.tokens, tokens[:n]):
                    self._drop(key)
            while self._entries and self.nbytes + nbytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[self._next_key] = _Entry(tokens, layers, nbytes, namespace)
            self._next_key += 1
            self.nbytes += nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _drop(self, key: int) -> None:
        self.nbytes -= self._entries.pop(key).nbytes


# ----- the engine's side (kept here so the engine only calls three hooks) -----------------------------


def prefix_cache_for(model, max_bytes: int) -> PrefixCache | None:
    """A cache for `model`'s engine, or None when off (`max_bytes` 0) or when the model's cache layers are not
    all plain `DynamicLayer`s (sliding-window layers drop old keys, so a stored prefix would not line up)."""
    if max_bytes <= 0:
        return None
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        layers = DynamicCache(config=model.config).layers
    except Exception:  # a model whose config DynamicCache cannot read: serve it without prefix caching
        return None
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return PrefixCache(max_bytes)


def prefill_from_prefix(engine, requests: list) -> bool:
    """Prefill `requests` (one prompt, one adapter) from the longest cached prefix of their prompt, running it
    once, and admit them into `engine`'s batch; False (nothing done) without a hit, or when one of them wants
    every prompt position's logprobs."""
    request = requests[0]
    if any(r.params.prompt_logprobs is not None for r in requests):
        return False
    hit = engine.prefix_cache.lookup(request.prompt_ids, _namespace(request))
    if hit is None:
        return False
    from matelix.inference.kv_cache import new_cache

    cache = new_cache(engine.model.config)  # copies the stored tensors into its own buffers
    for index, (keys, values) in enumerate(hit.layers):
        cache.update(keys, values, index)
    n = len(request.prompt_ids)
    suffix = torch.tensor([request.prompt_ids[hit.length:]], device=engine.device)  # (1, S)
    position_ids = torch.arange(hit.length, n, device=engine.device)[None]  # (1, S)
    mask = torch.ones((1, n), dtype=torch.long, device=engine.device)  # (1, T)
    for r in requests:
        r.pos = n
    logits = engine._forward(suffix, mask, position_ids, cache, [request])
    logits, mask = engine.share_rows(cache, logits, mask, [len(requests)])
    engine._admit(requests, logits, cache, mask)
    return True


def _namespace(request) -> str | None:
    return request.route.adapter if request.route is not None else None


def remember_when_done(engine, requests: list) -> None:
    """Have each of `requests` (rows of `engine`'s batch) stored when it ends by itself ("stop" or "length"):
    its prompt and the generated tokens fed so far (the last sampled token never went through the model). Done
    callbacks run before the final event is sent, so a client's next turn always finds its previous one."""

    def store(handle, event, request) -> None:
        if event.finish_reason not in ("stop", "length") or request not in engine._rows:
            return
        row = engine._rows.index(request)
        tokens = request.prompt_ids + request.generated[:-1]
        mask = engine._mask[row]  # (T,) left padding, then the row's tokens
        length = int(mask.sum())
        if length != len(tokens):
            return
        start = mask.shape[0] - length
        engine.prefix_cache.store(tokens, [(layer.keys[row:row + 1, :, start:].clone(),
                                            layer.values[row:row + 1, :, start:].clone())
                                           for layer in engine._cache.layers], _namespace(request))

    for request in requests:
        request.handle.add_done_callback(lambda handle, event, request=request: store(handle, event, request))
