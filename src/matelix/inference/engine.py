"""The batching engine: one worker thread per loaded model runs decode steps over all active requests.

API (token ids in, events out; no HTTP, no chat templates):

    engine = Engine(model, context_length=2048, stop_token_ids={eos},
                    text_stream=lambda params, prompt_ids: TextStream(tokenizer, params.stop, prompt_ids))
    handle = engine.submit(prompt_ids, SamplingParams(max_new_tokens=64, temperature=0))
    async for event in handle:          # or `for event in handle` on a plain thread
        event.text, event.token_ids     # text delta (whole characters, stop strings held back), new ids
        if event.finished: event.finish_reason, event.usage   # "stop" | "length" | "cancelled" | "error"
    handle.cancel()                     # leaves the batch at the next step
    handles = engine.submit_many(prompt_ids, params, n=2)    # n choices, seeds seed, seed+1, ...
    engine.close(drain_s=30)            # refuse new requests, let running ones finish (up to 30 s), end
                                        # the rest with finish_reason "error"
    handle = engine.submit(ids, params, route=Route("lora1", text_stream, stop_ids, vocab_limit))
                                        # a row of the same batch through adapter "lora1"
    future = engine.between_steps(fn)   # fn() on the worker thread, between two forward passes

Adapters (see `inference/adapters.py`): once `engine.lora` holds LoRA slots, every forward pass first tells them
each row's adapter (None for rows of the base model), so requests for different adapters share one batch. A
`Route` also carries the adapter's own detokenizer, stop tokens and vocabulary size (logits beyond it are masked,
for rows whose tokenizer is smaller than the model's embedding matrix).

`submit` validates synchronously and raises `RequestRejected` (a ValueError with `.param`) for an empty
prompt, a prompt that leaves no room in the context (`PromptTooLong`), token ids outside the vocabulary or
invalid sampling params, and `EngineClosed` after `close()`; nothing is queued in that case, so a caller
can still answer with a plain 400 before it starts streaming. `max_new_tokens` is clipped to the context
left after the prompt (`handle.max_new_tokens` holds the clipped value).

How a step works (transformers 5.24 `DynamicCache`, passed as `cache=`):
* Newcomers are prefilled together (left-padded, explicit `position_ids`) into their own cache, within a
  token budget per step so a long prompt cannot stall the running batch for long; their first token is
  sampled from the prefill logits. Newcomers with the same prompt and adapter (`n` choices, clients sending
  one prompt) run as one row whose cache, mask and logits are then copied (`shared_prefill_requests` counts them).
* Their cache is merged into the running batch cache: every layer's keys/values (B, H, T, D) are left-padded
  to a common T and concatenated along B; the 2-D attention mask gets zeros for the padding.
* One decode step feeds every row's last token at its own position (through `decode_step` for Llama-style
  models: the model's own submodules without transformers' per-call glue, bitwise the same logits).
  With fp32 or int8 weights on the CPU, no adapter attached and at most `compiled_decode.ROWS` rows, the step
  runs each layer as two compiled loops instead (`compiled_decode`: the same logits to fp32 rounding).
  Finished or cancelled rows are dropped with `batch_select_indices`, and mask columns that are padding in
  every remaining row are cut off, so the cache stays sized by the requests actually running.
* The caches' layers are `kv_cache.GrowingLayer`s: a step's keys/values are written in place, not
  concatenated onto a copy of the whole cache. With `prefix_cache_bytes`, rows that end by themselves are
  kept in a `prefix_cache.PrefixCache`, and newcomers whose prompts start with one are prefilled from it
  (only the rest of each prompt runs; newcomers with rests of similar length run together).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from matelix.inference.decode_step import decode_step_for
from matelix.inference.detokenize import TextStream
from matelix.inference.handle import GenerationEvent, RequestHandle, TokenLogprob, Usage
from matelix.inference.logprobs import prompt_logprobs, step_logprobs
from matelix.inference.prefix_cache import prefill_from_prefix, prefix_cache_for, remember_when_done
from matelix.inference.sampling import InvalidSamplingParams, RowSampler, SamplingParams, sample_rows

log = logging.getLogger("matelix.inference")


def _compiled_step(model):
    """`compiled_decode`'s step for `model` or None (imported here: numba takes ~0.5 s to import)."""
    from matelix.inference.compiled_decode import compiled_decode_step_for

    return compiled_decode_step_for(model)


MAX_BATCH_SIZE = 64
PREFILL_TOKEN_BUDGET = 2048


class RequestRejected(ValueError):
    """A request the engine will not run; `param` names the offending input."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class PromptTooLong(RequestRejected):
    """The prompt leaves no room for a single new token in the model's context."""


class EngineClosed(RuntimeError):
    """The engine was closed (its model unloaded); submit to a freshly acquired model instead."""


@dataclass(frozen=True)
class Route:
    """How one request runs on a shared base: its LoRA adapter, detokenizer, stop tokens and vocabulary."""

    adapter: str | None = None  # None: the model itself
    text_stream: Callable[[SamplingParams, list[int]], TextStream] | None = None
    stop_token_ids: frozenset[int] | None = None  # None: the engine's
    vocab_limit: int | None = None  # token ids >= this are never sampled (None: the whole vocabulary)


@dataclass(eq=False)
class _Request:
    handle: RequestHandle
    prompt_ids: list[int]
    params: SamplingParams
    sampler: RowSampler
    stream: TextStream | None
    stop_ids: frozenset[int]
    route: Route | None = None
    generated: list[int] = field(default_factory=list)
    pos: int = 0  # position of the next token fed to the model
    prompt_logprobs: tuple[TokenLogprob, ...] | None = None  # until the first event carries them

    @property
    def max_new_tokens(self) -> int:
        return self.handle.max_new_tokens


class Engine:
    """Continuous batching over one model. Thread-safe `submit`; all torch work on one worker thread."""

    def __init__(self, model, *, context_length: int, stop_token_ids: set[int] | frozenset[int],
                 text_stream: Callable[[SamplingParams, list[int]], TextStream] | None = None, name: str = "model",
                 max_batch_size: int = MAX_BATCH_SIZE, prefill_token_budget: int = PREFILL_TOKEN_BUDGET,
                 prefix_cache_bytes: int = 0):
        self.model = model
        self.name = name
        self.context_length = context_length
        self.stop_token_ids = frozenset(stop_token_ids)
        self.max_batch_size = max_batch_size
        self.prefill_token_budget = prefill_token_budget
        self._text_stream = text_stream
        self.device = next(model.parameters()).device
        self.vocab_size = model.get_output_embeddings().out_features
        forward_params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in forward_params else "past_key_values"
        self._keep_kw = {"logits_to_keep": 1} if "logits_to_keep" in forward_params else {}
        self.prefix_cache = prefix_cache_for(model, prefix_cache_bytes)  # None: off
        self._decode = decode_step_for(model)  # None: decode steps run the model's own forward too
        self._compiled = _compiled_step(model)  # None: not an fp32/int8 Llama-style model on the CPU
        self.lora = None  # `adapters.LoraSlots` once an adapter is attached (set on the worker thread)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._jobs: deque[tuple[Callable[[], object], Future]] = deque()
        self._rows: list[_Request] = []
        self._cache = None
        self._mask: torch.Tensor | None = None  # (B, T) 1 = real token, 0 = left padding
        self._closed = False
        self._close_reason = "model unloaded"
        self._drain_deadline = 0.0
        self.completed_count = 0
        """Requests that ended by themselves (stop, length, or cancelled between steps)."""
        self.cancelled_count = 0
        """Requests that left because their caller cancelled them (`RequestHandle.cancelled` is the flag)."""
        self.shared_prefill_requests = 0
        """Requests whose prompt was not prefilled for them: another request in their group had the same one."""
        self._thread = threading.Thread(target=self._run, name=f"matelix-engine-{name}", daemon=True)
        self._thread.start()

    # ----- public, any thread -------------------------------------------------------------------

    def submit(self, prompt_ids: list[int], params: SamplingParams, route: Route | None = None) -> RequestHandle:
        """Queue one request; raises RequestRejected / EngineClosed before anything is queued."""
        request = self._make_request(list(prompt_ids), params, route)
        with self._cond:
            if self._closed:
                raise EngineClosed(f"model {self.name!r} was unloaded")
            self._pending.append(request)
            self._cond.notify()
        return request.handle

    def submit_many(self, prompt_ids: list[int], params: SamplingParams, n: int,
                    route: Route | None = None) -> list[RequestHandle]:
        """Queue `n` choices for one prompt (seeds seed, seed+1, ...); all or none are queued."""
        if n < 1:
            raise RequestRejected(f"n must be >= 1, got {n}", "n")
        requests = [self._make_request(list(prompt_ids), params.for_choice(i), route) for i in range(n)]
        with self._cond:
            if self._closed:
                raise EngineClosed(f"model {self.name!r} was unloaded")
            self._pending.extend(requests)
            self._cond.notify()
        return [r.handle for r in requests]

    def between_steps(self, fn: Callable[[], object]) -> Future:
        """Run `fn()` on the worker thread between two steps (e.g. attach an adapter to the model); the future
        holds its result or exception."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise EngineClosed(f"model {self.name!r} was unloaded")
            self._jobs.append((fn, future))
            self._cond.notify()
        return future

    def routes_in_use(self) -> set[str]:
        """Adapters that queued or running requests use (read between steps, on the worker thread)."""
        return {r.route.adapter for r in [*self._pending, *self._rows] if r.route is not None}

    @property
    def active_count(self) -> int:
        return len(self._rows)

    @property
    def queued_count(self) -> int:
        return len(self._pending)

    def kv_cache_bytes(self) -> int:
        cache = self._cache
        if cache is None:
            return 0
        return sum(t.numel() * t.element_size() for layer in cache.layers
                   for t in (layer.keys, layer.values) if t is not None)

    def close(self, reason: str = "model unloaded", *, drain_s: float = 0.0, timeout: float = 30.0) -> None:
        """Stop accepting requests; let queued and running ones finish for up to `drain_s` seconds, then end
        the rest with finish_reason "error" and `reason`, and stop the worker."""
        with self._cond:
            self._closed = True
            self._close_reason = reason
            self._drain_deadline = time.monotonic() + drain_s
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout + drain_s)

    # ----- validation ---------------------------------------------------------------------------

    def _make_request(self, prompt_ids: list[int], params: SamplingParams, route: Route | None = None) -> _Request:
        try:
            params.validate()
        except InvalidSamplingParams as exc:
            raise RequestRejected(str(exc), exc.param) from exc
        if not prompt_ids:
            raise RequestRejected("the prompt is empty", "prompt")
        bad = next((t for t in prompt_ids if not isinstance(t, int) or not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise RequestRejected(f"prompt token id {bad!r} is outside the vocabulary (0..{self.vocab_size - 1})",
                                  "prompt")
        room = self.context_length - len(prompt_ids)
        if room < 1:
            raise PromptTooLong(f"the prompt has {len(prompt_ids)} tokens but the model's context is "
                                f"{self.context_length} tokens (at most {self.context_length - 1} allowed)",
                                "prompt")
        bad = next((t for t, _ in params.logit_bias if t >= self.vocab_size), None)
        if bad is not None:
            raise RequestRejected(f"logit_bias names token id {bad}, outside the vocabulary (0..{self.vocab_size - 1})",
                                  "logit_bias")
        if params.stop and self._text_stream is None:
            raise RequestRejected("stop strings need a tokenizer; this engine has none", "stop")
        handle = RequestHandle(f"req-{next(self._ids)}", len(prompt_ids), min(params.max_new_tokens, room),
                               self._wake)
        route_stops = route.stop_token_ids if route is not None else None
        stops = self.stop_token_ids if route_stops is None else route_stops
        stop_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else stops)
        text_stream = route.text_stream if route is not None and route.text_stream else self._text_stream
        stream = text_stream(params, prompt_ids) if text_stream is not None else None
        sampler = RowSampler(params, prompt_ids, self.vocab_size, self.device)
        return _Request(handle, prompt_ids, params, sampler, stream, stop_ids, route)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # ----- worker thread ------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._pending and not self._rows and not self._jobs:
                        self._cond.wait()
                    if self._closed and (not (self._pending or self._rows)
                                         or time.monotonic() >= self._drain_deadline):
                        break
                    jobs = list(self._jobs)
                    self._jobs.clear()
                    newcomers = [] if jobs else self._take_newcomers()  # a job may change the model first
                self._run_jobs(jobs)
                try:
                    self._drop_cancelled()
                    if newcomers:
                        self._prefill(newcomers)
                    if self._rows:
                        self._decode_step()
                except Exception as exc:  # a failing step must not kill the worker: fail its requests instead
                    log.exception("inference step failed on %s", self.name)
                    for request in [*newcomers, *self._rows]:
                        self._finish(request, "error", error=f"generation failed: {type(exc).__name__}: {exc}",
                                     kind="failed")
                    self._reset_batch()
        with self._cond:
            leftovers = [*self._pending, *self._rows]
            self._pending.clear()
            jobs = list(self._jobs)
            self._jobs.clear()
        for _, future in jobs:
            future.set_exception(EngineClosed(f"model {self.name!r} was unloaded"))
        for request in leftovers:
            self._finish(request, "error", error=self._close_reason, kind="closed")
        self._reset_batch()

    @staticmethod
    def _run_jobs(jobs: list[tuple[Callable[[], object], Future]]) -> None:
        for fn, future in jobs:
            try:
                future.set_result(fn())
            except Exception as exc:  # the caller gets it through the future
                future.set_exception(exc)

    def _take_newcomers(self) -> list[_Request]:
        taken: list[_Request] = []
        budget = self.prefill_token_budget
        while self._pending and len(self._rows) + len(taken) < self.max_batch_size:
            request = self._pending[0]
            if request.handle.cancelled:
                self._pending.popleft()
                self._finish(request, "cancelled")
                continue
            if taken and len(request.prompt_ids) > budget:
                break
            budget -= len(request.prompt_ids)
            taken.append(self._pending.popleft())
        return taken

    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor, cache,
                 rows: list[_Request], all_positions: bool = False) -> torch.Tensor:
        """Logits of the last position (B, V), or of every position (B, T, V) when `all_positions`; each row runs
        through its own adapter when the model serves adapters. One new token per row goes through the lean
        decode step when the model has one (`decode_step`: the same logits without transformers' glue), or for
        an fp32 or int8 CPU model without adapters and few rows through `compiled_decode`'s compiled layers."""
        if self.lora is not None:
            self.lora.select([r.route.adapter if r.route else None for r in rows])
        one_token = input_ids.shape[1] == 1 and not all_positions
        if one_token and self._compiled is not None and self.lora is None \
                and len(rows) <= self._compiled.rows:
            logits = self._compiled(input_ids, mask, position_ids, cache)
        elif one_token and self._decode is not None:
            logits = self._decode(input_ids, mask, position_ids, cache)
        else:
            keep = {} if all_positions else self._keep_kw
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                             use_cache=True, **{self._cache_kw: cache}, **keep)
            logits = out.logits if all_positions else out.logits[:, -1, :]
        if self.lora is not None:  # rows whose tokenizer knows fewer tokens than the embedding has rows
            for i, request in enumerate(rows):
                if request.route is not None and request.route.vocab_limit is not None:
                    logits[i, ..., request.route.vocab_limit:] = float("-inf")
        return logits

    def _prefill(self, group: list[_Request]) -> None:
        from matelix.inference.kv_cache import new_cache  # imports transformers

        # Requests with the same prompt on the same weights (n choices, clients sending one prompt) are
        # prefilled once: one row runs, its cache, mask and logits are copied to the others.
        sets: dict[tuple, list[_Request]] = {}
        for request in group:
            sets.setdefault((request.route.adapter if request.route else None, *request.prompt_ids), []).append(request)
        self.shared_prefill_requests += len(group) - len(sets)
        same = list(sets.values())
        if self.prefix_cache is not None:  # prompts that start with a cached sequence run from it
            same = prefill_from_prefix(self, same)
            if not same:
                return
        group = [r for s in same for r in s]
        leaders = [s[0] for s in same]
        length = max(len(r.prompt_ids) for r in leaders)
        input_ids = torch.zeros((len(leaders), length), dtype=torch.long)  # (U, T), left-padded
        mask = torch.zeros((len(leaders), length), dtype=torch.long)
        for i, request in enumerate(leaders):
            n = len(request.prompt_ids)
            input_ids[i, length - n:] = torch.tensor(request.prompt_ids)
            mask[i, length - n:] = 1
        for request in group:
            request.pos = len(request.prompt_ids)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        input_ids, mask, position_ids = (t.to(self.device) for t in (input_ids, mask, position_ids))
        cache = new_cache(self.model.config)
        # Prompt logprobs (completions with echo) come from this same pass: every position's logits.
        all_positions = any(r.params.prompt_logprobs is not None for r in group)
        logits = self._forward(input_ids, mask, position_ids, cache, leaders, all_positions)
        logits, mask = self.share_rows(cache, logits, mask, [len(s) for s in same])
        if all_positions:
            for i, request in enumerate(group):
                if request.params.prompt_logprobs is not None:
                    n = len(request.prompt_ids)
                    request.prompt_logprobs = prompt_logprobs(logits[i, length - n:], request.prompt_ids,
                                                              request.params.prompt_logprobs)
            logits = logits[:, -1, :]
        self._admit(group, logits, cache, mask)

    def share_rows(self, cache, logits: torch.Tensor, mask: torch.Tensor,
                   counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy prefilled row i of `cache`, `logits` and `mask` `counts[i]` times (requests sharing a prompt)."""
        if all(c == 1 for c in counts):
            return logits, mask
        rows = torch.repeat_interleave(torch.arange(len(counts), device=self.device),
                                       torch.tensor(counts, device=self.device))
        cache.batch_select_indices(rows)
        return logits[rows], mask[rows]

    def _admit(self, group: list[_Request], logits: torch.Tensor, cache, mask: torch.Tensor) -> None:
        """Sample the prefilled `group`'s first tokens from `logits` (G, V) and merge the rows that go on, with
        their `cache` and `mask` (G, T), into the running batch."""
        tokens = sample_rows(logits, [r.sampler for r in group])
        chosen = self._logprobs(logits, group, tokens)
        keep = [i for i, (r, t) in enumerate(zip(group, tokens, strict=True))
                if not self._emit_or_fail(r, t, chosen.get(i))]
        if not keep:
            return
        if len(keep) < len(group):
            cache.batch_select_indices(torch.tensor(keep, device=self.device))
            mask = mask[keep]
        self._merge(cache, mask, [group[i] for i in keep])
        if self.prefix_cache is not None:
            remember_when_done(self, [group[i] for i in keep])

    def _merge(self, cache, mask: torch.Tensor, rows: list[_Request]) -> None:
        if self._cache is None or not self._rows:
            self._cache, self._mask, self._rows = cache, mask, rows
            self._trim_padding()
            return
        length = max(self._mask.shape[1], mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, length), _left_pad(new.keys, length)])
            old.values = torch.cat([_left_pad(old.values, length), _left_pad(new.values, length)])
        self._mask = torch.cat([F.pad(self._mask, (length - self._mask.shape[1], 0)),
                                F.pad(mask, (length - mask.shape[1], 0))])
        self._rows = self._rows + rows

    def _decode_step(self) -> None:
        rows = self._rows
        input_ids = torch.tensor([[r.generated[-1]] for r in rows], device=self.device)  # (B, 1)
        position_ids = torch.tensor([[r.pos] for r in rows], device=self.device)  # (B, 1)
        self._mask = F.pad(self._mask, (0, 1), value=1)  # (B, T + 1)
        logits = self._forward(input_ids, self._mask, position_ids, self._cache, rows)
        tokens = sample_rows(logits, [r.sampler for r in rows])
        chosen = self._logprobs(logits, rows, tokens)
        keep = []
        for i, (request, token) in enumerate(zip(rows, tokens, strict=True)):
            request.pos += 1
            if not self._emit_or_fail(request, token, chosen.get(i)):
                keep.append(i)
        self._select(keep)

    @staticmethod
    def _logprobs(logits: torch.Tensor, rows: list[_Request], tokens: list) -> dict[int, TokenLogprob]:
        """Logprobs of the sampled tokens, for the rows that asked (row index → entry); the rest pay nothing."""
        wanted = [i for i, (r, t) in enumerate(zip(rows, tokens, strict=True))
                  if r.params.logprobs is not None and not isinstance(t, Exception)]
        if not wanted:
            return {}
        entries = step_logprobs(logits, wanted, [tokens[i] for i in wanted], [rows[i].params.logprobs for i in wanted])
        return dict(zip(wanted, entries, strict=True))

    def _drop_cancelled(self) -> None:
        keep = []
        for i, request in enumerate(self._rows):
            if request.handle.cancelled:
                self._finish(request, "cancelled")
            else:
                keep.append(i)
        self._select(keep)

    def _select(self, keep: list[int]) -> None:
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset_batch()
            return
        self._cache.batch_select_indices(torch.tensor(keep, device=self.device))
        self._mask = self._mask[keep]
        self._rows = [self._rows[i] for i in keep]
        self._trim_padding()

    def _trim_padding(self) -> None:
        """Cut KV columns that are padding in every row (left over from rows that have left)."""
        used = self._mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else 0
        if start > 0:
            for layer in self._cache.layers:
                layer.keys = layer.keys[:, :, start:]
                layer.values = layer.values[:, :, start:]
            self._mask = self._mask[:, start:]

    def _reset_batch(self) -> None:
        self._rows, self._cache, self._mask = [], None, None

    def _emit_or_fail(self, request: _Request, token: int | Exception, logprob: TokenLogprob | None = None) -> bool:
        """`_emit`, except that a failure of this one request (its sampler or its detokenizer) ends only this
        request, with finish_reason "error"; True when the request is finished."""
        if not isinstance(token, Exception):
            try:
                return self._emit(request, token, logprob)
            except Exception as exc:  # reported to that request only
                token = exc
        log.warning("request %s failed on %s: %s", request.handle.id, self.name, token)
        self._finish(request, "error", error=f"generation failed: {type(token).__name__}: {token}", kind="failed")
        return True

    def _emit(self, request: _Request, token: int, logprob: TokenLogprob | None = None) -> bool:
        """Record `token` for `request`, send its event; True when the request is finished."""
        request.generated.append(token)
        stream = request.stream
        finish, text = None, ""
        grammar = request.sampler.grammar
        if token in request.stop_ids or (grammar is not None and grammar.done):
            finish = "stop"
            text = stream.finish()[0] if stream else ""
        else:
            text, stopped = stream.push(token) if stream else ("", False)
            if stopped:
                finish = "stop"
            elif len(request.generated) >= request.max_new_tokens:
                tail, stopped = stream.finish() if stream else ("", False)
                text += tail
                finish = "stop" if stopped else "length"
        if request.handle.cancelled and finish is None:
            finish = "cancelled"
        usage = Usage(prompt_tokens=len(request.prompt_ids), completion_tokens=len(request.generated)) \
            if finish else None
        prompt, request.prompt_logprobs = request.prompt_logprobs, None  # sent once, on the first event
        request.handle._push(GenerationEvent(text, (token,), finish, usage, logprobs=(logprob,) if logprob else (),
                                             prompt_logprobs=prompt))
        if finish:
            self.completed_count += 1
            self.cancelled_count += finish == "cancelled"
        return finish is not None

    def _finish(self, request: _Request, reason: str, error: str | None = None, kind: str | None = None) -> None:
        self.cancelled_count += reason == "cancelled"
        usage = Usage(prompt_tokens=len(request.prompt_ids), completion_tokens=len(request.generated))
        request.handle._push(GenerationEvent("", (), reason, usage, error, kind))


def _left_pad(t: torch.Tensor, length: int) -> torch.Tensor:
    """Left-pad a (B, H, T, D) tensor along T with zeros to `length`."""
    return F.pad(t, (0, 0, length - t.shape[2], 0))
