"""Logprobs from the engine's own forward passes, checked against a plain forward pass of the same model,
alone and batched with rows that ask for none; and logit_bias."""

from __future__ import annotations

import pytest
import torch

from matelix.inference.engine import RequestRejected
from matelix.inference.sampling import SamplingParams


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def reference_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log_softmax of every position's logits for `ids` (T, V)."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def test_generated_and_prompt_logprobs_match_a_plain_forward_pass_also_when_batched(tiny_lm, make_engine):
    tokenizer, model = tiny_lm
    engine = make_engine()
    ids = encode(tokenizer, "Der Wal schwimmt im Meer und singt")
    others = [engine.submit(encode(tokenizer, t), SamplingParams(max_new_tokens=8, temperature=0))
              for t in ("Hallo", "Ein ganz anderer und längerer Satz ohne Logprobs")]
    params = SamplingParams(max_new_tokens=6, temperature=0, ignore_eos=True, logprobs=3, prompt_logprobs=2)
    result = engine.submit(ids, params).wait()
    for other in others:
        other.wait()
    full = ids + result.token_ids
    expected = reference_logprobs(model, full)
    assert len(result.logprobs) == len(result.token_ids) == 6
    for j, entry in enumerate(result.logprobs):
        row = expected[len(ids) - 1 + j]
        assert entry.token_id == result.token_ids[j]
        assert entry.logprob == pytest.approx(float(row[entry.token_id]), abs=1e-4)
        assert [t for t, _ in entry.top] == row.topk(3).indices.tolist()
        assert entry.top[0][1] == pytest.approx(entry.logprob, abs=1e-6)  # greedy picks the most likely
    prompt = result.prompt_logprobs
    assert (prompt[0].token_id, prompt[0].logprob) == (ids[0], None) and len(prompt) == len(ids)
    for i in range(1, len(ids)):
        assert prompt[i].token_id == ids[i]
        assert prompt[i].logprob == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-4)
        assert len(prompt[i].top) == 2


def test_rows_without_logprobs_get_none(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    result = make_engine().submit(encode(tokenizer, "Hallo"), SamplingParams(max_new_tokens=3, temperature=0)).wait()
    assert result.logprobs == [] and result.prompt_logprobs is None


def test_logit_bias_forces_and_bans_tokens(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine()
    ids = encode(tokenizer, "Der Wal")
    forced = engine.submit(ids, SamplingParams(max_new_tokens=4, temperature=0, ignore_eos=True,
                                               logit_bias=((42, 100.0),))).wait()
    assert forced.token_ids == [42] * 4
    plain = engine.submit(ids, SamplingParams(max_new_tokens=1, temperature=0)).wait().token_ids[0]
    banned = engine.submit(ids, SamplingParams(max_new_tokens=1, temperature=0,
                                               logit_bias=((plain, -100.0),))).wait().token_ids[0]
    assert banned != plain
    with pytest.raises(RequestRejected) as exc:
        engine.submit(ids, SamplingParams(logit_bias=((10**9, 1.0),)))
    assert exc.value.param == "logit_bias"


def test_choices_of_one_prompt_prefilled_once_each_get_the_prompt_logprobs(tiny_lm, make_engine):
    tokenizer, _ = tiny_lm
    engine = make_engine()
    ids = encode(tokenizer, "Der Wal schwimmt im Meer und singt")
    params = SamplingParams(max_new_tokens=3, temperature=0.8, seed=3, prompt_logprobs=1)
    alone = engine.submit(ids, params).wait().prompt_logprobs
    results = [h.wait() for h in engine.submit_many(ids, params, 3)]
    assert engine.shared_prefill_requests == 2
    assert all(r.prompt_logprobs == alone for r in results)
