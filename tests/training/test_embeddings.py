"""Vocabulary growth: new embedding and head rows start as the mean of the rows they stand for."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from matelix.demo.model import TinyLlamaSpec, create_demo_model
from matelix.training.embeddings import resize_with_mean_init

SMALL = dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)


CORPUS = ["def add(a, b):\n    return a + b\n", "Hallo Welt, wie geht es dir heute?", "print('ok')"] * 20


def _model(tmp_path, tied: bool):
    out = create_demo_model(tmp_path / ("tied" if tied else "untied"), texts=iter(CORPUS),
                            spec=TinyLlamaSpec(**SMALL, tie_word_embeddings=tied))
    return AutoModelForCausalLM.from_pretrained(out)


def test_new_rows_are_the_mean_of_their_source_rows_for_embeddings_and_untied_head(tmp_path):
    model = _model(tmp_path, tied=False)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()
    old = emb_before.shape[0]

    resize_with_mean_init(model, old + 2, {old: [5, 17, 42]})

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.shape[0] == head.shape[0] == old + 2 == model.config.vocab_size
    torch.testing.assert_close(emb[old], emb_before[[5, 17, 42]].mean(dim=0))
    torch.testing.assert_close(head[old], head_before[[5, 17, 42]].mean(dim=0))
    # a new token without sources starts from the mean of all old rows
    torch.testing.assert_close(emb[old + 1], emb_before.mean(dim=0))
    torch.testing.assert_close(head[old + 1], head_before.mean(dim=0))
    torch.testing.assert_close(emb[:old], emb_before)
    torch.testing.assert_close(head[:old], head_before)


def test_tied_head_stays_tied_after_resize(tmp_path):
    model = _model(tmp_path, tied=True)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    old = emb_before.shape[0]

    resize_with_mean_init(model, old + 1, {old: [3, 4]})

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert head.data_ptr() == emb.data_ptr()
    torch.testing.assert_close(head[old], emb_before[[3, 4]].mean(dim=0))


def test_peft_wrapped_model_is_resized_through_its_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_model(tmp_path, tied=False),
                           LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    emb_before = model.get_input_embeddings().weight.detach().clone()
    old = emb_before.shape[0]

    resize_with_mean_init(model, old + 1, {old: [7, 8]})

    assert model.get_input_embeddings().weight.shape[0] == old + 1
    torch.testing.assert_close(model.get_input_embeddings().weight[old], emb_before[[7, 8]].mean(dim=0))
    assert model.get_output_embeddings().weight.shape[0] == old + 1


def test_padded_embedding_rows_given_to_new_tokens_are_initialised_from_their_sources(tmp_path):
    model = _model(tmp_path, tied=False)
    padded = model.get_input_embeddings().weight.shape[0]
    resize_with_mean_init(model, padded + 4)  # an embedding larger than the tokenizer, as some models ship
    emb_before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()

    resize_with_mean_init(model, padded + 4, {padded + 1: [5, 6]})  # the new token reuses a padding row

    assert model.get_input_embeddings().weight.shape[0] == padded + 4
    torch.testing.assert_close(model.get_input_embeddings().weight[padded + 1], emb_before[[5, 6]].mean(dim=0))
    torch.testing.assert_close(model.get_output_embeddings().weight[padded + 1], head_before[[5, 6]].mean(dim=0))
    torch.testing.assert_close(model.get_input_embeddings().weight[padded + 2], emb_before[padded + 2])
