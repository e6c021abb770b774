"""logprobs, logit_bias and many stop strings on `/v1` through the official `openai` SDK, on the tiny model:
the numbers equal a plain forward pass of the same model, in the shapes OpenAI and vLLM use."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DEMO = "models/tiny-demo"


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def logprobs(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)

    return tokenizer, logprobs


def test_completions_echo_with_logprobs_scores_the_prompt_as_lm_eval_reads_it(openai_client, reference):
    tokenizer, logprobs = reference
    ids = tokenizer("Der Wal schwimmt im Meer")["input_ids"]
    r = openai_client.completions.create(model=DEMO, prompt=ids, max_tokens=1, temperature=0, logprobs=1, echo=True)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(ids) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    expected = logprobs(ids)
    for i in range(1, len(ids)):
        assert lp.token_logprobs[i] == pytest.approx(float(expected[i - 1, ids[i]]), abs=1e-4)
        assert len(lp.top_logprobs[i]) == 1
        assert max(lp.top_logprobs[i].values()) == pytest.approx(float(expected[i - 1].max()), abs=1e-4)
    assert lp.token_logprobs[-1] == pytest.approx(float(expected[-1].max()), abs=1e-4)  # the greedy new token
    assert r.choices[0].text.startswith(tokenizer.decode(ids))
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


def test_completion_logprobs_stream_in_the_same_numbers(openai_client):
    kw = {"model": DEMO, "prompt": "Ein Baum", "max_tokens": 5, "temperature": 0, "logprobs": 2,
          "extra_body": {"ignore_eos": True}}
    whole = openai_client.completions.create(**kw).choices[0].logprobs
    chunks = [c for c in openai_client.completions.create(stream=True, **kw) if c.choices and c.choices[0].logprobs]
    streamed = [v for c in chunks for v in c.choices[0].logprobs.token_logprobs]
    assert streamed == pytest.approx(whole.token_logprobs)
    assert [o for c in chunks for o in c.choices[0].logprobs.text_offset] == whole.text_offset


def test_chat_logprobs_and_top_logprobs_whole_and_streamed(openai_client):
    kw = {"model": DEMO, "messages": [{"role": "user", "content": "Hallo"}], "max_tokens": 4, "temperature": 0,
          "logprobs": True, "top_logprobs": 3, "extra_body": {"ignore_eos": True}}
    r = openai_client.chat.completions.create(**kw)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens == 4
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)  # greedy: the top one
        assert bytes(entry.bytes).decode(errors="replace") == entry.token
    assert math.isclose(sum(math.exp(t.logprob) for t in content[0].top_logprobs[:1]), math.exp(content[0].logprob))
    streamed = [e.logprob for c in openai_client.chat.completions.create(stream=True, **kw)
                if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == pytest.approx([e.logprob for e in content])
    plain = openai_client.chat.completions.create(**{**kw, "logprobs": False, "top_logprobs": None})
    assert plain.choices[0].logprobs is None


def test_logit_bias_bans_and_forces_tokens(openai_client, reference):
    tokenizer, logprobs = reference
    ids = tokenizer("Der Wal")["input_ids"]
    greedy = int(logprobs(ids)[-1].argmax())
    kw = {"model": DEMO, "prompt": ids, "temperature": 0, "extra_body": {"ignore_eos": True}}
    assert openai_client.completions.create(max_tokens=1, **kw).choices[0].text == tokenizer.decode([greedy])
    banned = openai_client.completions.create(max_tokens=1, logit_bias={str(greedy): -100}, **kw)
    assert banned.choices[0].text != tokenizer.decode([greedy])
    forced = openai_client.completions.create(max_tokens=3, logit_bias={"42": 100}, **kw)
    assert forced.choices[0].text == tokenizer.decode([42, 42, 42])


def test_many_stop_strings_are_accepted(openai_client):
    stops = [f"\u2603{i}" for i in range(40)]
    r = openai_client.completions.create(model=DEMO, prompt="Der Wal", max_tokens=3, stop=stops)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_an_empty_prompt_starts_from_bos(openai_client, reference):
    tokenizer, _ = reference
    r = openai_client.completions.create(model=DEMO, prompt="", max_tokens=2, temperature=0, echo=True, logprobs=0)
    assert r.usage.prompt_tokens == 1 and r.choices[0].logprobs.tokens[0] == tokenizer.bos_token
