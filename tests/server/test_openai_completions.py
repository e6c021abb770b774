"""`/v1/completions` through the official `openai` SDK: prompt lists, n, echo, token ids, stop, errors."""

import re

import openai
import pytest
from transformers import AutoTokenizer

DEMO = "models/tiny-demo"
PROMPTS = ["Der Wal ist", "Ein Baum hat viele"]


def complete(client, **kw):
    kw.setdefault("model", DEMO)
    kw.setdefault("prompt", PROMPTS[0])
    kw.setdefault("max_tokens", 6)
    return client.completions.create(**kw)


def token_count(tiny_model_dir, text: str) -> int:
    return len(AutoTokenizer.from_pretrained(tiny_model_dir)(text)["input_ids"])


def test_list_of_prompts_with_n_2_gives_one_choice_per_prompt_and_choice(openai_client, tiny_model_dir):
    r = complete(openai_client, prompt=PROMPTS, n=2, temperature=0, extra_body={"ignore_eos": True})
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == DEMO
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert all(c.finish_reason == "length" and c.logprobs is None for c in r.choices)
    # Greedy: both choices of a prompt agree, and each matches that prompt completed alone.
    assert r.choices[0].text == r.choices[1].text and r.choices[2].text == r.choices[3].text
    assert r.choices[2].text == complete(openai_client, prompt=PROMPTS[1], temperature=0,
                                         extra_body={"ignore_eos": True}).choices[0].text
    assert r.usage.prompt_tokens == sum(token_count(tiny_model_dir, p) for p in PROMPTS)
    assert r.usage.completion_tokens == 4 * 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_prompt_list_matches_the_whole_response(openai_client):
    kw = {"prompt": PROMPTS, "n": 2, "temperature": 0.8, "seed": 5, "max_tokens": 5}
    whole = complete(openai_client, **kw)
    texts, finishes, usage = {}, {}, None
    for chunk in complete(openai_client, stream=True, stream_options={"include_usage": True}, **kw):
        assert chunk.id and chunk.object == "text_completion"
        if chunk.usage:
            usage = chunk.usage
            assert chunk.choices == []
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason:
                finishes[c.index] = finishes.get(c.index, 0) + 1
    assert [texts[i] for i in range(4)] == [c.text for c in whole.choices]
    assert finishes == {0: 1, 1: 1, 2: 1, 3: 1}
    assert usage == whole.usage


def test_echo_prepends_the_prompt(openai_client):
    plain = complete(openai_client, temperature=0)
    echoed = complete(openai_client, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPTS[0] + plain.choices[0].text


def test_token_id_prompt_equals_the_text_prompt(openai_client, tiny_model_dir):
    ids = AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPTS[0])["input_ids"]
    by_ids = complete(openai_client, prompt=ids, temperature=0)
    by_text = complete(openai_client, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text and by_ids.usage == by_text.usage


def greedy_text_with_a_word(client) -> tuple[str, str, str]:
    """A prompt whose greedy continuation (random tiny model) has a word in its second half to stop at."""
    for prompt in (*PROMPTS, "Hallo", "Heute ist"):
        text = complete(client, prompt=prompt, temperature=0, max_tokens=24,
                        extra_body={"ignore_eos": True}).choices[0].text
        word = re.compile(r"[A-Za-z]{3}").search(text, len(text) // 2)
        if word:
            return prompt, text, word.group()
    pytest.fail("no greedy continuation of the demo model has a word to stop at")


def test_stop_string_is_excluded_also_when_streaming(openai_client):
    prompt, text, stop = greedy_text_with_a_word(openai_client)
    expected = text[:text.index(stop)]
    kw = {"prompt": prompt, "temperature": 0, "max_tokens": 24, "extra_body": {"ignore_eos": True}}
    whole = complete(openai_client, stop=stop, **kw)
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason == "stop"
    chunks = list(complete(openai_client, stop=[stop], stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_is_reproducible(openai_client):
    a = complete(openai_client, temperature=1.2, seed=99, max_tokens=10)
    b = complete(openai_client, temperature=1.2, seed=99, max_tokens=10)
    assert a.choices[0].text == b.choices[0].text


@pytest.mark.parametrize(("kw", "param"), [
    ({"prompt": []}, "prompt"),
    ({"prompt": [[1, 2], "mixed"]}, "prompt"),
    ({"prompt": [999999]}, "prompt"),
    ({"temperature": -0.1}, "temperature"),
    ({"best_of": 3}, "best_of"),
    ({"logprobs": 21}, "logprobs"),
    ({"suffix": "!"}, "suffix"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
])
def test_invalid_or_unsupported_values_are_bad_requests(openai_client, kw, param):
    with pytest.raises(openai.BadRequestError) as exc:
        complete(openai_client, **kw)
    assert exc.value.param == param


def test_prompt_longer_than_the_context_is_a_bad_request_naming_the_prompt(openai_client):
    with pytest.raises(openai.BadRequestError) as exc:
        complete(openai_client, prompt=["Hallo", "Wal " * 3000])
    assert exc.value.code == "context_length_exceeded" and exc.value.param == "prompt"
    assert exc.value.body["message"].startswith("prompt 1: ")
