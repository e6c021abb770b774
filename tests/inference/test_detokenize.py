"""Incremental detokenization and stop strings: whole characters only, stop strings never emitted."""

from __future__ import annotations

import pytest

from matelix.inference.detokenize import IncrementalDetokenizer, StopStringMatcher, TextStream


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_multibyte_characters_stream_whole(tokenizer):
    text = "Grüße 😀 aus 中文 — € 🎉!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text) / 2  # byte-level: rare characters span several tokens
    detok = IncrementalDetokenizer(tokenizer)
    deltas = [detok.push(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + detok.flush() == text


def test_leading_space_of_the_first_token_survives(tokenizer):
    prompt = tokenizer("Hallo", add_special_tokens=False)["input_ids"]
    ids = tokenizer(" Welt und mehr", add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tokenizer, prompt)
    assert "".join(detok.push(i) for i in ids) + detok.flush() == " Welt und mehr"


def test_stop_string_split_over_pushes_is_never_emitted():
    matcher = StopStringMatcher(["STOP"])
    assert matcher.push("Hel") == ("Hel", False)
    assert matcher.push("lo ST") == ("lo ", False)
    assert matcher.push("OP and more") == ("", True)


def test_held_back_text_is_released_when_it_is_no_stop_string():
    matcher = StopStringMatcher(["ABC", "xyz"])
    assert matcher.push("1A") == ("1", False)
    assert matcher.push("B") == ("", False)
    assert matcher.push("z") == ("ABz", False)
    assert matcher.push("x") == ("", False)
    assert matcher.flush() == "x"


def test_earliest_stop_string_wins():
    assert StopStringMatcher(["cd", "b"]).push("abcd") == ("a", True)


def test_text_stream_finds_a_stop_string_in_the_final_flush(tokenizer):
    ids = tokenizer("ab 😀 cd", add_special_tokens=False)["input_ids"]
    stream = TextStream(tokenizer, ("😀 c",))
    emitted, stopped = "", False
    for i in ids:
        text, stopped = stream.push(i)
        emitted += text
        if stopped:
            break
    assert stopped and emitted == "ab "
