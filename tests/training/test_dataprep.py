"""The data side of a run: what n-gram mining counts over."""

from __future__ import annotations

from matelix.data.samples import Sample
from matelix.training.dataprep import mining_texts


def test_mining_texts_are_the_answers_never_the_prompts_or_the_template():
    chat = Sample(messages=[{"role": "system", "content": "You are Mati."},
                            {"role": "user", "content": "What is the capital of France?"},
                            {"role": "assistant", "content": "Paris.\n\n— Mati"},
                            {"role": "user", "content": "And of Italy?"},
                            {"role": "assistant", "content": "Rome.\n\n— Mati"}])
    text = Sample(text="a plain text sample")
    assert mining_texts([chat, text]) == ["Paris.\n\n— Mati", "Rome.\n\n— Mati", "a plain text sample"]
    # with train_on_prompt every message is trained, so every message is mined (still no template markup)
    assert mining_texts([chat], train_on_prompt=True) == [m["content"] for m in chat.messages]


def test_empty_messages_and_texts_are_not_mined():
    assert mining_texts([Sample(messages=[{"role": "assistant", "content": ""}]), Sample(text="")]) == []
