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

    def lookup(self, prompt_ids: list[int], namespace: str | None = None, count: bool = True) -> PrefixHit | None:
        """The longest stored prefix of `prompt_ids` (at most all but its last token) stored under `namespace`,
        or None below `min_tokens`. `count` False leaves `hits`/`reused_tokens` to the caller (`count_hit`)."""
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
        if count:
            self.count_hit(best)
        return PrefixHit(best, [(k[:, :, :best], v[:, :, :best]) for k, v in entry.layers])

    def count_hit(self, reused_tokens: int) -> None:
        self.hits += 1
        self.reused_tokens += reused_tokens

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


def prefill_from_prefix(engine, sets: list[list]) -> list[list]:
    """Prefill the sets of requests (each one prompt on one adapter) whose prompts start with a cached sequence
    from it and admit them into `engine`'s batch; returns the sets left for a plain prefill (no hit, or a
    request wanting every prompt position's logprobs).

    Hits are prefilled together, one forward pass per group of similar rest lengths: every row of a group runs
    the same number S of new tokens (its longest rest), a row with a shorter rest starting that many tokens
    earlier in its prompt instead of reusing them, so each row is its cached keys/values (left-padded to the
    group's longest) followed by S tokens of its own, and no padding sits between a prefix and its rest."""
    hits, rest = [], []
    for requests in sets:
        hit = None
        if all(r.params.prompt_logprobs is None for r in requests):
            hit = engine.prefix_cache.lookup(requests[0].prompt_ids, _namespace(requests[0]), count=False)
        if hit is None:
            rest.append(requests)
        else:
            hits.append((requests, hit))
    hits.sort(key=lambda h: len(h[0][0].prompt_ids) - h[1].length)  # shortest rest first
    group: list = []
    for item in hits:
        if group and not _fits(group, item):
            _prefill_group(engine, group)
            group = []
        group.append(item)
    if group:
        _prefill_group(engine, group)
    return rest


def _fits(group: list, item) -> bool:
    """Whether `item` (the longest rest so far) joins `group` without running over half as many tokens again as
    the rows' rests (a long rest would make every short one re-run its prefix) or past a row's whole prompt."""
    new = len(item[0][0].prompt_ids) - item[1].length
    rests = sum(len(requests[0].prompt_ids) - hit.length for requests, hit in group) + new
    return (len(group) + 1) * new <= 1.5 * rests and all(len(r[0].prompt_ids) >= new for r, _ in group)


def _prefill_group(engine, group: list) -> None:
    from matelix.inference.kv_cache import new_cache

    width = max(len(requests[0].prompt_ids) - hit.length for requests, hit in group)  # S new tokens per row
    reuse = [len(requests[0].prompt_ids) - width for requests, _ in group]  # cached tokens each row keeps
    past = max(reuse)
    cache = new_cache(engine.model.config)  # copies the stored tensors into its own buffers
    if past:
        for index, (keys, values) in enumerate(group[0][1].layers):
            shape = (len(group), keys.shape[1], past, keys.shape[3])  # (G, H, past, D), left-padded
            group_keys, group_values = keys.new_zeros(shape), values.new_zeros(shape)
            for row, ((_, hit), n) in enumerate(zip(group, reuse, strict=True)):
                if n:
                    group_keys[row, :, past - n:] = hit.layers[index][0][0, :, :n]
                    group_values[row, :, past - n:] = hit.layers[index][1][0, :, :n]
            cache.update(group_keys, group_values, index)
    mask = torch.zeros((len(group), past + width), dtype=torch.long)
    input_ids = torch.zeros((len(group), width), dtype=torch.long)
    position_ids = torch.zeros((len(group), width), dtype=torch.long)
    for row, ((requests, _), n) in enumerate(zip(group, reuse, strict=True)):
        prompt = requests[0].prompt_ids
        mask[row, past - n:] = 1
        input_ids[row] = torch.tensor(prompt[n:])
        position_ids[row] = torch.arange(n, len(prompt))
        if n:
            engine.prefix_cache.count_hit(n)
        for request in requests:
            request.pos = len(prompt)
    input_ids, mask, position_ids = (t.to(engine.device) for t in (input_ids, mask, position_ids))
    leaders = [requests[0] for requests, _ in group]
    logits = engine._forward(input_ids, mask, position_ids, cache, leaders)
    logits, mask = engine.share_rows(cache, logits, mask, [len(requests) for requests, _ in group])
    engine._admit([r for requests, _ in group for r in requests], logits, cache, mask)


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
