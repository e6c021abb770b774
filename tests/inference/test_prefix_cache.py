"""Prefix caching: which stored sequence a prompt reuses, what is kept and evicted, and that an engine answering
from a cached prefix gives the same greedy tokens as `generate` on the whole prompt, alone and batched."""

from __future__ import annotations

import threading

import torch

from matelix.inference.prefix_cache import PrefixCache
from matelix.inference.sampling import SamplingParams


def kv(tokens: int, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Layers whose keys hold their position, so a test can see which entry and how much of it came back."""
    pos = torch.arange(tokens, dtype=torch.float32).view(1, 1, tokens, 1)
    return [(pos.clone(), pos.clone() + 1000) for _ in range(layers)]


def entry_bytes(tokens: int, layers: int = 2) -> int:
    return tokens * 4 * 2 * layers


def test_lookup_returns_the_longest_common_prefix_leaving_one_prompt_token():
    cache = PrefixCache(max_bytes=10**6, min_tokens=2)
    cache.store(list(range(10)), kv(10))
    cache.store([0, 1, 2, 99, 98, 97], kv(6))
    hit = cache.lookup([0, 1, 2, 3, 4, 5, 50, 51])
    assert hit.length == 6
    assert hit.layers[0][0].shape == (1, 1, 6, 1) and hit.layers[1][1][0, 0, -1, 0] == 1005
    assert cache.lookup(list(range(10))).length == 9  # the last prompt token always runs
    assert cache.lookup([0, 1, 2, 99, 98, 97, 7]).length == 6
    assert cache.lookup([5, 6, 7]) is None
    assert cache.lookup([0, 1]) is None  # below min_tokens
    assert (cache.hits, cache.reused_tokens) == (3, 21)


def test_an_entry_extended_by_a_newer_one_is_dropped():
    cache = PrefixCache(max_bytes=10**6, min_tokens=2)
    cache.store([1, 2, 3, 4], kv(4))
    cache.store([1, 2, 3, 4, 5, 6], kv(6))
    cache.store([1, 2, 7, 8], kv(4))
    assert len(cache) == 2 and cache.nbytes == entry_bytes(6) + entry_bytes(4)


def test_least_recently_used_entries_leave_first_within_the_byte_limit():
    cache = PrefixCache(max_bytes=entry_bytes(8) * 2, min_tokens=2)
    cache.store([1] * 8, kv(8))
    cache.store([2] * 8, kv(8))
    assert cache.lookup([1] * 9) is not None  # [1]*8 is now the most recently used
    cache.store([3] * 8, kv(8))
    assert cache.lookup([2] * 9) is None
    assert cache.lookup([1] * 9) is not None and cache.lookup([3] * 9) is not None
    cache.store([4] * 100, kv(100))  # larger than the whole cache: not kept
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes


def greedy(n: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=n, temperature=0.0)


def reference(tiny_lm, ids: list[int], n: int) -> list[int]:
    tokenizer, model = tiny_lm
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return out[0, len(ids):].tolist()


def test_a_follow_up_turn_reuses_the_previous_turn_and_matches_generate(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine(prefix_cache_bytes=64 * 2**20)
    first = tokenizer("Du bist MaTeLiX, eine hilfsbereite Assistentin. Was ist ein neuronales Netz?")["input_ids"]
    answer = engine.submit(first, greedy(12)).wait().token_ids
    assert engine.prefix_cache.hits == 0 and len(engine.prefix_cache) == 1
    follow_up = first + answer + tokenizer(" Und wozu braucht man das?", add_special_tokens=False)["input_ids"]
    result = engine.submit(follow_up, greedy(12)).wait()
    assert engine.prefix_cache.hits == 1
    assert engine.prefix_cache.reused_tokens == len(first) + len(answer) - 1  # the last answer token never ran
    assert result.token_ids == reference(tiny_lm, follow_up, 12)


def test_cached_and_fresh_prompts_batched_together_match_generate(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine(prefix_cache_bytes=64 * 2**20)
    system = tokenizer("Du bist MaTeLiX, eine hilfsbereite KI-Assistentin für alle Fragen.")["input_ids"]
    engine.submit(system + tokenizer(" Hallo!", add_special_tokens=False)["input_ids"], greedy(4)).wait()
    prompts = [system + tokenizer(text, add_special_tokens=False)["input_ids"]
               for text in (" Was ist LoRA?", " Erzähl mir von Füchsen.")]
    prompts.append(tokenizer("Ein ganz anderer Anfang ohne Systemtext")["input_ids"])
    handles = [engine.submit(ids, greedy(10)) for ids in prompts]
    results = [h.wait().token_ids for h in handles]
    assert engine.prefix_cache.hits >= 2
    assert results == [reference(tiny_lm, ids, 10) for ids in prompts]


def test_clients_repeating_a_cached_prompt_together_run_its_rest_once(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine(prefix_cache_bytes=64 * 2**20)
    prompt = tokenizer("Du bist MaTeLiX, eine hilfsbereite KI-Assistentin. Erzähl mir von Füchsen.")["input_ids"]
    engine.submit(prompt, greedy(6)).wait()
    release = threading.Event()
    engine.between_steps(release.wait)  # holds the worker: the three requests below arrive as one group
    handles = [engine.submit(prompt, greedy(10)) for _ in range(2)]
    handles.append(engine.submit(prompt, SamplingParams(max_new_tokens=10, temperature=1.0, seed=3)))
    release.set()
    results = [h.wait().token_ids for h in handles]
    assert (engine.prefix_cache.hits, engine.shared_prefill_requests) == (1, 2)  # one lookup, one row ran
    assert results[0] == results[1] == reference(tiny_lm, prompt, 10)
    assert results[2] == engine.submit(prompt, SamplingParams(max_new_tokens=10, temperature=1.0,
                                                              seed=3)).wait().token_ids


def test_distinct_prompts_on_one_cached_prefix_are_prefilled_together(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine(prefix_cache_bytes=64 * 2**20)
    system = tokenizer("Du bist MaTeLiX, eine hilfsbereite KI-Assistentin für alle Fragen rund um Modelle.")["input_ids"]
    engine.submit(system + tokenizer(" Hallo!", add_special_tokens=False)["input_ids"], greedy(4)).wait()
    rests = [" Was ist LoRA?", " Wer bist du denn?", " Wie geht es dir?",
             " Bitte erkläre mir ausführlich, wie ein Transformer aufgebaut ist, welche Schichten er hat, wie "
             "die Aufmerksamkeit funktioniert und warum das Training so viel Speicher braucht."]
    prompts = [system + tokenizer(text, add_special_tokens=False)["input_ids"] for text in rests]
    runs: list[tuple[int, int]] = []  # (rows, new tokens) of every forward pass with more than one token
    forward = engine._forward

    def spy(input_ids, *args, **kwargs):
        if input_ids.shape[1] > 1:
            runs.append(tuple(input_ids.shape))
        return forward(input_ids, *args, **kwargs)

    engine._forward = spy
    release = threading.Event()
    engine.between_steps(release.wait)  # the four prompts arrive as one group
    handles = [engine.submit(ids, greedy(10)) for ids in prompts]
    release.set()
    results = [h.wait().token_ids for h in handles]
    assert results == [reference(tiny_lm, ids, 10) for ids in prompts]
    short = sorted(len(p) - len(system) for p in prompts[:3])
    assert short[0] < short[-1] <= 1.5 * sum(short) / 3  # rests of different, similar lengths
    # the three short rests run as one pass of their longest rest; the long one alone, not making them re-run it
    assert runs == [(3, short[-1]), (1, len(prompts[3]) - len(system))]
    assert engine.prefix_cache.hits == 4


def test_without_a_budget_the_engine_keeps_nothing(make_engine, tiny_lm):
    engine = make_engine()
    assert engine.prefix_cache is None
    assert engine.submit(tiny_lm[0]("Hallo Welt, wie geht es?")["input_ids"], greedy(3)).wait().token_ids
