"""Chat prompts through the tokenizer's template: system turn, text parts, roles, stop tokens."""

from __future__ import annotations

import pytest

from matelix.inference.chat import InvalidMessages, normalize_messages, render_chat, stop_token_ids


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_system_is_prepended_as_a_system_message_with_generation_prompt(tokenizer):
    ids = render_chat(tokenizer, [{"role": "user", "content": "Hallo"}], system="Kurz.")
    assert tokenizer.decode(ids) == "<|System|>\nKurz.\n<|Benutzer|>\nHallo\n<|Assistentin|>\n"


def test_text_parts_are_joined():
    out = normalize_messages([{"role": "user", "content": [{"type": "text", "text": "a"},
                                                           {"type": "text", "text": "b"}]}])
    assert out == [{"role": "user", "content": "ab"}]


@pytest.mark.parametrize(("messages", "param"), [
    ([], "messages"),
    ([{"role": "robot", "content": "x"}], "messages[0].role"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "messages[0].content"),
    (["hi"], "messages[0]"),
])
def test_bad_messages_name_the_field(messages, param):
    with pytest.raises(InvalidMessages) as err:
        normalize_messages(messages)
    assert err.value.param == param


def test_the_message_count_is_not_capped_here():
    """How many messages a request may hold is the server's setting (`MATELIX_MAX_MESSAGES`), checked by the
    admission gate; rendering takes whatever it is given."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"} for i in range(1100)]
    assert len(normalize_messages(messages)) == 1100


def test_stop_tokens_are_eos_and_known_end_of_turn_tokens(tokenizer):
    class Model:
        generation_config = None

    assert stop_token_ids(tokenizer, Model()) == {tokenizer.eos_token_id}
