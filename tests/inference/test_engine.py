"""The batching engine on the tiny demo model: equality with `generate`, seeds, stops, cancel, load."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from matelix.inference.engine import EngineClosed, PromptTooLong, RequestRejected
from matelix.inference.sampling import SamplingParams

PROMPTS = ["Hallo Welt", "The quick brown fox jumps over the lazy dog and keeps on running",
           "Grüße", "Ein Beispiel mit Umlauten: äöü und noch etwas mehr Text"]


def greedy(n: int, **kw) -> SamplingParams:
    return SamplingParams(max_new_tokens=n, temperature=0.0, **kw)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def reference(tiny_lm, ids: list[int], n: int, **kw) -> list[int]:
    tokenizer, model = tiny_lm
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **kw)
    return out[0, len(ids):].tolist()


def test_greedy_output_equals_generate_alone(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    for text in PROMPTS:
        ids = encode(tokenizer, text)
        result = engine.submit(ids, greedy(24)).wait()
        assert result.token_ids == reference(tiny_lm, ids, 24)
        assert result.text == tokenizer.decode(result.token_ids, skip_special_tokens=True)


def test_greedy_output_equals_generate_when_batched_with_other_requests(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = [encode(tokenizer, t) for t in PROMPTS]
    expected = [reference(tiny_lm, i, 30) for i in ids]
    expected_penalised = reference(tiny_lm, ids[1], 30, repetition_penalty=1.3)
    # Different lengths and parameters in one batch; some join while others are already decoding.
    handles = [engine.submit(ids[0], greedy(30)),
               engine.submit(ids[2], SamplingParams(max_new_tokens=40, temperature=0.9, top_p=0.9, seed=1))]
    first_events = iter(handles[0])
    first = next(first_events)
    handles.append(engine.submit(ids[1], greedy(30)))
    handles.append(engine.submit(ids[3], greedy(30)))
    handles.append(engine.submit(ids[1], greedy(30, repetition_penalty=1.3)))
    handles.append(engine.submit(ids[3], SamplingParams(max_new_tokens=7, temperature=1.2, top_k=5,
                                                        frequency_penalty=0.5)))
    first_tokens = list(first.token_ids) + [t for e in first_events for t in e.token_ids]
    results = [h.wait() for h in handles[1:]]
    assert first_tokens == expected[0]
    assert results[1].token_ids == expected[1]
    assert results[2].token_ids == expected[3]
    assert results[3].token_ids == expected_penalised
    assert len(results[4].token_ids) <= 7


def test_staggered_joins_keep_every_request_identical_to_generate(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = [encode(tokenizer, t) for t in PROMPTS]
    collected: list[list[int]] = [[] for _ in ids]
    handles = []
    for i, prompt in enumerate(ids):
        handles.append(engine.submit(prompt, greedy(20 + 5 * i)))
        for event in handles[0] if i == 0 else ():
            collected[0].extend(event.token_ids)
            if len(collected[0]) >= 3 * (i + 1):
                break
    for i, handle in enumerate(handles):
        collected[i].extend(t for e in handle for t in e.token_ids)
    for i, prompt in enumerate(ids):
        assert collected[i] == reference(tiny_lm, prompt, 20 + 5 * i)


def test_seeded_sampling_is_reproducible_alone_and_batched(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[1])
    params = SamplingParams(max_new_tokens=32, temperature=0.9, top_p=0.95, top_k=50, seed=1234)
    alone = engine.submit(ids, params).wait().token_ids
    again = engine.submit(ids, params).wait().token_ids
    noise = [engine.submit(encode(tokenizer, p), SamplingParams(max_new_tokens=20, temperature=1.0))
             for p in PROMPTS]
    batched = engine.submit(ids, params).wait().token_ids
    for handle in noise:
        handle.wait()
    assert alone == again == batched
    other_seed = engine.submit(ids, SamplingParams(max_new_tokens=32, temperature=0.9, top_p=0.95, top_k=50,
                                                   seed=4321)).wait().token_ids
    assert other_seed != alone


def test_n_choices_differ_but_are_reproducible(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[0])
    params = SamplingParams(max_new_tokens=24, temperature=1.0, seed=7)
    first = [h.wait().token_ids for h in engine.submit_many(ids, params, 3)]
    second = [h.wait().token_ids for h in engine.submit_many(ids, params, 3)]
    assert first == second
    assert len({tuple(t) for t in first}) == 3


def test_requests_with_the_same_prompt_in_one_group_are_prefilled_once(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    same, other = encode(tokenizer, PROMPTS[1]), encode(tokenizer, PROMPTS[3])
    seeded = SamplingParams(max_new_tokens=16, temperature=1.0, seed=11)
    alone = engine.submit(same, seeded).wait().token_ids
    prefill_rows: list[int] = []
    forward = engine._forward

    def spy(input_ids, *args, **kwargs):
        if input_ids.shape[1] > 1:
            prefill_rows.append(input_ids.shape[0])
        return forward(input_ids, *args, **kwargs)

    engine._forward = spy
    release = threading.Event()
    engine.between_steps(release.wait)  # holds the worker so that every request below joins one group
    handles = [engine.submit(same, greedy(20)), engine.submit(other, greedy(20)), engine.submit(same, seeded),
               engine.submit(same, greedy(12))]
    release.set()
    results = [h.wait() for h in handles]
    assert prefill_rows == [2]  # four requests, two distinct prompts
    assert engine.shared_prefill_requests == 2
    assert results[0].token_ids == reference(tiny_lm, same, 20)
    assert results[1].token_ids == reference(tiny_lm, other, 20)
    assert results[2].token_ids == alone  # its own seed, not its leader's tokens
    assert results[3].token_ids == reference(tiny_lm, same, 12)
    assert results[3].usage.prompt_tokens == len(same)


def test_stop_string_split_across_tokens_is_never_emitted(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[1])
    full = engine.submit(ids, greedy(40)).wait()
    pieces = [tokenizer.decode([t]) for t in full.token_ids]
    boundary = next(k for k in range(1, len(pieces)) if len(pieces[k - 1]) >= 2 and len(pieces[k]) >= 2)
    stop = pieces[boundary - 1][-2:] + pieces[boundary][:2]
    expected = full.text[:full.text.find(stop)]
    emitted = ""
    handle = engine.submit(ids, greedy(40, stop=(stop,)))
    for event in handle:
        emitted += event.text
        assert expected.startswith(emitted), "text beyond the stop string (or part of it) was streamed"
    assert emitted == expected
    assert event.finish_reason == "stop"


def test_streamed_text_never_splits_utf8_characters(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    results = [engine.submit(encode(tokenizer, p), SamplingParams(max_new_tokens=40, temperature=1.0, seed=s))
               for s, p in enumerate(PROMPTS)]
    for handle in results:
        deltas, tokens = [], []
        for event in handle:
            deltas.append(event.text)
            tokens.extend(event.token_ids)
        full = tokenizer.decode(tokens, skip_special_tokens=True)
        assert "".join(deltas) == full
        for delta in deltas[:-1]:  # only the final flush may carry U+FFFD of bytes that never formed a char
            assert "\ufffd" not in delta or "\ufffd" in full


def test_usage_counts_and_length_finish(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[0])
    result = engine.submit(ids, greedy(5, ignore_eos=True)).wait()
    assert result.finish_reason == "length"
    assert result.usage.prompt_tokens == len(ids)
    assert result.usage.completion_tokens == len(result.token_ids) == 5


def test_stop_token_ends_with_stop_reason(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[0])
    first = engine.submit(ids, greedy(3)).wait().token_ids
    result = engine.submit(ids, greedy(10, stop_token_ids=(first[1],))).wait()
    assert result.finish_reason == "stop"
    assert result.token_ids == first[:2]


def test_prompt_longer_than_context_is_rejected_and_max_new_tokens_clipped(tiny_lm, make_engine):
    engine = make_engine(context_length=16)
    with pytest.raises(PromptTooLong, match="context is 16 tokens"):
        engine.submit(list(range(5, 21)), greedy(4))
    handle = engine.submit(list(range(5, 15)), greedy(100, ignore_eos=True))
    assert handle.max_new_tokens == 6
    assert len(handle.wait().token_ids) == 6


def test_invalid_requests_are_rejected_before_queueing(make_engine):
    engine = make_engine()
    with pytest.raises(RequestRejected, match="empty"):
        engine.submit([], greedy(4))
    with pytest.raises(RequestRejected, match="outside the vocabulary"):
        engine.submit([10**7], greedy(4))
    with pytest.raises(RequestRejected, match="temperature"):
        engine.submit([5, 6], SamplingParams(temperature=-1.0))
    with pytest.raises(RequestRejected, match="max_new_tokens"):
        engine.submit([5, 6], SamplingParams(max_new_tokens=0))
    assert engine.queued_count == 0


def test_cancel_frees_the_slot(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    handle = engine.submit(encode(tokenizer, PROMPTS[1]), greedy(2000, ignore_eos=True))
    events = iter(handle)
    next(events)
    assert engine.active_count == 1
    handle.cancel()
    last = list(events)[-1]
    assert last.finish_reason == "cancelled"
    assert last.usage.completion_tokens < 2000
    assert engine.active_count == 0 and engine.queued_count == 0
    assert engine.kv_cache_bytes() == 0


def test_fifty_concurrent_requests_all_complete(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    results: list = [None] * 50
    ids = [encode(tokenizer, PROMPTS[i % len(PROMPTS)] + " " * (i % 3)) for i in range(50)]

    def client(i: int) -> None:
        results[i] = engine.submit(ids[i], SamplingParams(max_new_tokens=8 + i % 5, temperature=0.7,
                                                          seed=i)).wait()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(r is not None and r.finish_reason in ("stop", "length") for r in results)
    assert engine.active_count == 0 and engine.kv_cache_bytes() == 0


def test_close_ends_in_flight_requests_with_an_error(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    handle = engine.submit(encode(tokenizer, PROMPTS[0]), greedy(2000, ignore_eos=True))
    events = iter(handle)
    next(events)
    engine.close("model unloaded")
    last = list(events)[-1]
    assert last.finish_reason == "error" and last.error == "model unloaded" and last.error_kind == "closed"
    with pytest.raises(EngineClosed):
        engine.submit([5, 6], greedy(2))


def test_async_iteration_yields_the_same_events(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[2])
    result = asyncio.run(engine.submit(ids, greedy(16)).result())
    assert result.token_ids == reference(tiny_lm, ids, 16)


def test_close_with_drain_lets_running_requests_finish(tiny_lm, make_engine):
    engine = make_engine()
    tokenizer, _ = tiny_lm
    handle = engine.submit(encode(tokenizer, PROMPTS[0]), greedy(12, ignore_eos=True))
    events = iter(handle)
    next(events)
    engine.close("model evicted", drain_s=120)
    last = list(events)[-1]
    assert last.finish_reason == "length" and last.usage.completion_tokens == 12
    with pytest.raises(EngineClosed):
        engine.submit([5, 6], greedy(2))


def test_a_request_whose_sampler_fails_ends_alone_and_the_batch_goes_on(tiny_lm, make_engine, monkeypatch):
    from matelix.inference import sampling

    real_sample = sampling.RowSampler.sample

    def failing_for_marked(self, logits):
        if self.params.temperature == 0.77:  # the one request marked to fail
            raise RuntimeError("sampler broke")
        return real_sample(self, logits)

    monkeypatch.setattr(sampling.RowSampler, "sample", failing_for_marked)
    engine = make_engine()
    tokenizer, _ = tiny_lm
    ids = encode(tokenizer, PROMPTS[1])
    good = engine.submit(ids, greedy(20))
    bad = engine.submit(ids, SamplingParams(max_new_tokens=20, temperature=0.77, seed=3))
    good_result, bad_result = good.wait(), bad.wait()
    assert bad_result.finish_reason == "error" and "sampler broke" in (bad_result.error or "")
    assert bad_result.error_kind == "failed"
    assert good_result.finish_reason == "length"
    assert good_result.token_ids == reference(tiny_lm, ids, 20)
    assert engine.submit(ids, greedy(5)).wait().token_ids == reference(tiny_lm, ids, 5)
