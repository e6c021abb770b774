"""The model's check of mined phrases: the loss change of each occurrence, the model left as it was, and
`mine` keeping only the phrases the model reads more cheaply."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from matelix.data import load_dataset
from matelix.data.validate import load_prepared_tokenizer
from matelix.demo import demo_data_path
from matelix.demo.model import TinyLlamaSpec, create_demo_model
from matelix.training.config import NgramOptions
from matelix.training.dataprep import mining_texts
from matelix.training.modelsetup import grow_vocabulary
from matelix.training.ngram_screen import MARGIN, _harm, screen_phrases
from matelix.training.ngrams import Phrase, add_phrases, mine


def _enc(ids, offsets):
    return SimpleNamespace(ids=ids, offsets=offsets)


def test_an_occurrence_is_charged_its_token_and_the_next_against_the_same_characters_before():
    # "ab cd e": before a|b| cd| e (4 tokens), after [ab cd] as phrase 100, then " e"
    old = _enc([1, 2, 3, 4], [(0, 1), (1, 2), (2, 5), (5, 7)])
    new = _enc([9, 100, 4], [(0, 0), (0, 5), (5, 7)])  # a leading token keeps the phrase off position 0
    old_nll = np.array([0.0, 2.0, 3.0, 1.0])
    new_nll = np.array([0.0, 1.5, 0.5])
    into: dict[int, list[float]] = {}
    _harm(old, old_nll, new, new_nll, {100}, into)
    assert into == {100: [pytest.approx((1.5 + 0.5) - (0.0 + 2.0 + 3.0 + 1.0))]}
    # the window runs on to the next edge both tokenisations share
    new = _enc([9, 100, 7], [(0, 0), (0, 4), (4, 7)])  # " cd e" split differently after the phrase
    old = _enc([1, 2, 3, 4], [(0, 1), (1, 2), (2, 5), (5, 7)])
    into = {}
    _harm(old, old_nll, new, np.array([0.0, 1.0, 1.0]), {100}, into)
    assert into == {100: [pytest.approx(2.0 - 6.0)]}


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def model_dir(request, tmp_path_factory):
    return create_demo_model(tmp_path_factory.mktemp("screen") / "m", seed=1,
                             spec=TinyLlamaSpec(tie_word_embeddings=request.param))


def _text_loss(model, tokenizer, text: str) -> float:
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))


def test_a_phrase_at_the_end_of_a_text_is_charged_the_whole_texts_loss_change(model_dir):
    """Everything before the phrase reads alike both ways, so the change of the whole text's loss is the
    change the check charges to the phrase; the model is left exactly as it was."""
    tokenizer = load_prepared_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    grow_vocabulary(model, tokenizer)
    text = "Das Training beginnt mit einer kleinen Lernrate"
    phrase_text = " kleinen Lernrate"
    phrase = Phrase(phrase_text, tokenizer(phrase_text, add_special_tokens=False)["input_ids"], 1, 1)
    assert len(phrase.source_ids) >= 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight

    kept, change = screen_phrases(model, tokenizer, [text], [phrase], 1000, log=lambda s: None)

    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    grown_tok, grown = copy.deepcopy(tokenizer), copy.deepcopy(model)
    add_phrases(grown_tok, grown, [copy.copy(phrase)])
    assert grown_tok(text, add_special_tokens=False)["input_ids"][-1] == len(tokenizer)  # the phrase, last
    expected = _text_loss(grown, grown_tok, text) - _text_loss(model, tokenizer, text)
    assert change[phrase_text] == pytest.approx(expected, abs=0.01)  # rounded to 0.01 nats
    assert (kept == [phrase]) == (change[phrase_text] <= -MARGIN)


def test_mine_with_the_model_keeps_only_phrases_read_more_cheaply_and_counts_the_rest(tiny_model_dir):
    tokenizer = load_prepared_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    grow_vocabulary(model, tokenizer)
    texts = mining_texts(load_dataset(demo_data_path("demo_chat.csv")).samples)
    unchecked = mine(tokenizer, texts, NgramOptions(screen_tokens=0), log=lambda s: None, model=model)
    checked = mine(tokenizer, texts, NgramOptions(), log=lambda s: None, model=model)
    assert unchecked.left_out == 0 and all(p.loss_change is None for p in unchecked.phrases)
    assert checked.phrases and checked.left_out > 0  # this model reads some phrases worse, some better
    assert len(checked.phrases) + checked.left_out == len(unchecked.phrases)
    assert all(p.loss_change is not None and p.loss_change <= -MARGIN for p in checked.phrases)
    assert {p.text for p in checked.phrases} < {p.text for p in unchecked.phrases}
    assert checked.tokens_after > unchecked.tokens_after  # fewer phrases, measured again
    assert checked.totals()["left_out_by_model_check"] == checked.left_out
