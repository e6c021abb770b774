"""Per-request sampling: parameters, validation, and turning one row of logits into the next token.

`SamplingParams` is what a caller passes to `Engine.submit`; it is validated once in `validate()` (raises
`InvalidSamplingParams`, a `ValueError` naming the field). `RowSampler` holds one request's sampling state
(its `torch.Generator`, penalty counters) so a request samples the same tokens whether it runs alone or
batched with others. `sample_rows` samples a whole batch: greedy rows without penalties take one vectorised
argmax, the rest go row by row.

Processing order follows transformers' `generate`: logit bias, grammar mask, repetition penalty,
presence/frequency penalty, temperature, top-k, top-p, min-p; then argmax (temperature 0) or a multinomial
draw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from matelix.inference.grammar import Grammar, GrammarMask

MAX_LOGPROBS = 20  # alternatives per position, as OpenAI allows
MAX_STOP_STRING_LENGTH = 256  # how many stop strings a request may send is a setting, checked at admission
# The seeds `torch.Generator.manual_seed` accepts: a signed or unsigned 64-bit integer (-1 and 2**64 - 1 are the
# same seed). Per-choice seeds wrap into this range, so `seed + j` never overflows.
SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1
# Temperatures below this sample greedily (as in vLLM): dividing logits by them overflows float32, and their
# limit is the argmax anyway.
GREEDY_TEMPERATURE = 1e-5


class InvalidSamplingParams(ValueError):
    """A sampling parameter out of range; `param` names the field."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples. Defaults are greedy-free plain sampling at temperature 1."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens (clipped by the engine to the context left after the prompt)."""
    temperature: float = 1.0
    """0 (or below GREEDY_TEMPERATURE) = greedy (argmax); otherwise logits are divided by it."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability adds up to `top_p`."""
    top_k: int = 0
    """Keep only the `top_k` most likely tokens (0 = off)."""
    min_p: float = 0.0
    """Drop tokens whose probability is below `min_p` times the most likely token's (0 = off)."""
    repetition_penalty: float = 1.0
    """transformers-style: logits of tokens seen in prompt or output are divided (>0) / multiplied (<0) by it."""
    presence_penalty: float = 0.0
    """OpenAI-style: subtracted once from the logit of every token already generated."""
    frequency_penalty: float = 0.0
    """OpenAI-style: subtracted per occurrence from the logit of every token already generated."""
    seed: int | None = None
    """Seeds this request's own generator: same seed + prompt + params → same tokens, batched or not."""
    stop: tuple[str, ...] = ()
    """Stop strings: generation ends when one appears; it and anything after it is never emitted."""
    stop_token_ids: tuple[int, ...] = ()
    """Extra token ids ending generation, added to the model's EOS and end-of-turn tokens."""
    ignore_eos: bool = False
    """Keep generating past the model's stop tokens (benchmarks); `stop_token_ids` still apply."""
    skip_special_tokens: bool = True
    """Leave special tokens (role markers, EOS) out of the streamed text."""
    logprobs: int | None = None
    """Return each generated token's logprob and its `logprobs` most likely alternatives (0..20; None = off)."""
    prompt_logprobs: int | None = None
    """Return each prompt token's logprob and alternatives, from the prefill pass (0..20; None = off)."""
    logit_bias: tuple[tuple[int, float], ...] = ()
    """(token id, bias) pairs added to the logits before sampling (-100..100; 100 ≈ force, -100 ≈ ban)."""
    grammar: Grammar | None = None
    """A compiled grammar (`inference.grammar.compile_grammar`) the output must stay inside."""

    def validate(self) -> SamplingParams:
        """Check every field; returns self so it can be chained. Raises InvalidSamplingParams."""
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise InvalidSamplingParams("max_new_tokens", f"must be an integer >= 1, got {self.max_new_tokens!r}")
        _check_range("temperature", self.temperature, 0.0, None)
        _check_range("top_p", self.top_p, 0.0, 1.0, low_open=True)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidSamplingParams("top_k", f"must be an integer >= 0, got {self.top_k!r}")
        _check_range("min_p", self.min_p, 0.0, 1.0)
        _check_range("repetition_penalty", self.repetition_penalty, 0.0, None, low_open=True)
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not SEED_MIN <= self.seed <= SEED_MAX):
            raise InvalidSamplingParams("seed", f"must be an integer from {SEED_MIN} to {SEED_MAX}, got {self.seed!r}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= MAX_LOGPROBS):
                raise InvalidSamplingParams(name, f"must be an integer from 0 to {MAX_LOGPROBS}, got {value!r}")
        for token, bias in self.logit_bias:
            if isinstance(token, bool) or not isinstance(token, int) or token < 0:
                raise InvalidSamplingParams("logit_bias", f"keys must be token ids, got {token!r}")
            _check_range("logit_bias", bias, -100.0, 100.0)
        for s in self.stop:
            if not isinstance(s, str) or not s or len(s) > MAX_STOP_STRING_LENGTH:
                raise InvalidSamplingParams(
                    "stop", f"each stop string must be a non-empty string of at most {MAX_STOP_STRING_LENGTH} chars")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE or self.top_k == 1

    @property
    def penalised(self) -> bool:
        """Anything that changes the logits before the argmax (a greedy row with none of it is an argmax)."""
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 \
            or bool(self.logit_bias) or self.grammar is not None

    def for_choice(self, index: int) -> SamplingParams:
        """The params of choice `index` of an n>1 request: seeds differ per choice (seed + index) so choices
        differ, yet the whole set stays reproducible. The sum wraps modulo 2**64, which the generator treats
        as the same seed, so a seed near the top of the range still gives valid per-choice seeds."""
        return self if self.seed is None or index == 0 else replace(self, seed=(self.seed + index) % 2**64)


def _check_range(name: str, value: float, low: float | None, high: float | None, *, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidSamplingParams(name, f"must be a number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise InvalidSamplingParams(name, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise InvalidSamplingParams(name, f"must be <= {high}, got {value}")


class RowSampler:
    """One request's sampling state: its generator and the token statistics its penalties need."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int], vocab_size: int, device: torch.device):
        self.params = params
        self.generator: torch.Generator | None = None
        if params.seed is not None and not params.greedy:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(params.seed)
        self.seen: torch.Tensor | None = None  # (V,) bool: prompt + output, for repetition_penalty
        self.counts: torch.Tensor | None = None  # (V,) float: output only, for presence/frequency penalty
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
            ids = torch.tensor([i for i in prompt_ids if 0 <= i < vocab_size], dtype=torch.long, device=device)
            self.seen[ids] = True
        if params.presence_penalty != 0.0 or params.frequency_penalty != 0.0:
            self.counts = torch.zeros(vocab_size, dtype=torch.float32, device=device)
        self.grammar = GrammarMask(params.grammar, vocab_size) if params.grammar is not None else None
        self.bias: torch.Tensor | None = None  # (V,) float: logit_bias
        if params.logit_bias:
            self.bias = torch.zeros(vocab_size, dtype=torch.float32, device=device)
            for token, value in params.logit_bias:
                self.bias[token] += value

    @property
    def trivial(self) -> bool:
        """Greedy without penalties: the batch can take a plain argmax for this row."""
        return self.params.greedy and not self.params.penalised

    @property
    def masked_argmax(self) -> bool:
        """Greedy whose only change to the logits is its grammar mask (and no logprobs, which must see the
        raw logits): masked in place, the batch's one argmax serves it too."""
        p = self.params
        return p.greedy and self.grammar is not None and p.logprobs is None and not p.logit_bias \
            and p.repetition_penalty == 1.0 and p.presence_penalty == 0.0 and p.frequency_penalty == 0.0

    def observe(self, token: int) -> None:
        if self.grammar is not None:
            self.grammar.accept(token)
        if self.seen is not None and token < self.seen.numel():
            self.seen[token] = True
        if self.counts is not None and token < self.counts.numel():
            self.counts[token] += 1

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply penalties and warpers to one row of logits (V,), float32."""
        p = self.params
        if self.bias is not None:
            logits = logits + self.bias
        if self.grammar is not None:  # tokens that would leave the grammar become -inf
            logits = self.grammar.apply(logits.contiguous())
        if self.seen is not None:
            picked = logits[self.seen]
            logits[self.seen] = torch.where(picked < 0, picked * p.repetition_penalty, picked / p.repetition_penalty)
        if self.counts is not None:
            logits = logits - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0).float()
        if p.greedy:
            return logits
        logits = logits / p.temperature
        if p.top_k > 0 and p.top_k < logits.numel():
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=False)
            cumulative = sorted_logits.softmax(-1).cumsum(-1)
            drop_sorted = cumulative <= (1 - p.top_p)
            drop_sorted[-1] = False  # always keep the most likely token
            logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), float("-inf"))
        if p.min_p > 0.0:
            probs = logits.softmax(-1)
            logits = logits.masked_fill(probs < p.min_p * probs.max(), float("-inf"))
        return logits

    def sample(self, logits: torch.Tensor) -> int:
        logits = self.process(logits)
        if self.params.greedy:
            return int(torch.argmax(logits))
        probs = logits.softmax(-1)
        if not bool(torch.isfinite(probs).all()):
            # Extreme values (a repetition penalty close to 0) overflowed to inf; in the limit the largest
            # logits share all the probability.
            logits = logits.nan_to_num(nan=float("-inf"))
            probs = (logits == logits.max()).float()
        return int(torch.multinomial(probs, 1, generator=self.generator))


def sample_rows(logits: torch.Tensor, samplers: list[RowSampler]) -> list[int | Exception]:
    """Next token for every row of `logits` (B, V); each row uses its own sampler. A row whose sampler
    fails gets the exception in place of a token, so one bad request cannot fail the whole batch."""
    logits = logits.float()
    failed: dict[int, Exception] = {}
    for row, sampler in enumerate(samplers):
        if sampler.masked_argmax:
            try:
                sampler.grammar.apply(logits[row])
            except Exception as exc:  # reported to that request only
                failed[row] = exc
    tokens: list[int | Exception] = torch.argmax(logits, dim=-1).tolist()
    for row, sampler in enumerate(samplers):
        if row in failed:
            tokens[row] = failed[row]
            continue
        try:
            if not sampler.trivial and not sampler.masked_argmax:
                tokens[row] = sampler.sample(logits[row].clone())
            sampler.observe(tokens[row])
        except Exception as exc:  # reported to that request only
            tokens[row] = exc
    return tokens
