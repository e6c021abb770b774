"""The portable HF folder: tokenizer and config files both transformers lines read, tied embeddings."""

from __future__ import annotations

import torch

from matelix.export.hf import portable_model_config, portable_tokenizer_config, tie_embeddings


def test_tokenizer_config_uses_names_the_4x_line_knows():
    data = {"backend": "tokenizers", "tokenizer_class": "TokenizersBackend", "is_local": True,
            "local_files_only": False, "extra_special_tokens": ["<|Benutzer|>", "<|Assistentin|>"],
            "additional_special_tokens": ["<|Benutzer|>", "<x>"], "eos_token": "</s>"}
    portable_tokenizer_config(data, "{{ messages }}")
    assert data == {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>",
                    "additional_special_tokens": ["<x>", "<|Benutzer|>", "<|Assistentin|>"],
                    "chat_template": "{{ messages }}"}


def test_a_mapping_of_extra_special_tokens_is_kept():
    data = {"extra_special_tokens": {"image_token": "<image>"}}
    portable_tokenizer_config(data, None)
    assert data["extra_special_tokens"] == {"image_token": "<image>"} and "chat_template" not in data


def test_model_config_gets_rope_theta_and_torch_dtype_next_to_the_5x_keys():
    data = {"dtype": "float32", "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}
    portable_model_config(data)
    assert data["rope_theta"] == 100000.0 and data["torch_dtype"] == "float32" and "rope_scaling" not in data


def tied_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def test_tied_embeddings_stay_tied():
    model = tied_llama()
    assert tie_embeddings(model) == "tied" and model.lm_head.weight is model.model.embed_tokens.weight


def test_embeddings_trained_apart_from_a_tied_head_are_kept_apart():
    # What merging a LoRA run that trained the input embedding in full (modules_to_save) leaves behind.
    model = tied_llama()
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    with torch.no_grad():
        model.model.embed_tokens.weight[5] += 1.0
    assert tie_embeddings(model) == "untied-by-training"
    assert model.config.tie_word_embeddings is False


def test_equal_but_separate_matrices_are_tied_again():
    model = tied_llama()
    model.lm_head.weight = torch.nn.Parameter(model.model.embed_tokens.weight.detach().clone())
    assert tie_embeddings(model) == "tied" and model.lm_head.weight is model.model.embed_tokens.weight
