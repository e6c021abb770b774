"""The Ollama Modelfile: a TEMPLATE only for chat templates whose rendering it reproduces exactly."""

from __future__ import annotations

import pytest

from matelix.data.template import matelix_chat_template
from matelix.export.modelfile import CHATML_TEMPLATE, ollama_modelfile, template_kind

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_the_matelix_template_becomes_go_template_with_eos_after_assistant_turns(tokenizer):
    kind, template, system = template_kind(tokenizer)
    assert kind == "matelix-chat" and system is None
    assert '{{ if eq .Role "assistant" }}</s>\n{{ end }}' in template and template.endswith("<|Assistentin|>\n")


def test_the_dialogplus_template_closes_every_turn(tokenizer):
    tokenizer.chat_template = matelix_chat_template("dialogplus")
    kind, template, _ = template_kind(tokenizer)
    assert kind == "matelix-dialogplus" and '{{ if eq .Role "assistant" }}' not in template


def test_chatml_with_a_default_system_prompt_becomes_template_plus_system(tokenizer):
    tokenizer.chat_template = SMOLLM2_TEMPLATE
    kind, template, system = template_kind(tokenizer)
    assert (kind, template) == ("chatml", CHATML_TEMPLATE)
    assert system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_an_unknown_template_gets_no_translation(tokenizer):
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    text, kind = ollama_modelfile("m.gguf", tokenizer, ["</s>"], 2048)
    assert kind is None and 'TEMPLATE """' not in text and "not one MaTeLiX Lab translates" in text
    assert 'PARAMETER stop "</s>"' in text and "FROM ./m.gguf" in text


def test_modelfile_names_file_stops_context_and_sampling_defaults(tokenizer):
    from transformers import GenerationConfig

    gen = GenerationConfig(do_sample=True, temperature=0.2, top_p=0.9)
    text, kind = ollama_modelfile("run-f16.gguf", tokenizer, ["</s>", '<"x">'], 2048, gen)
    assert kind == "matelix-chat"
    lines = text.splitlines()
    assert "FROM ./run-f16.gguf" in lines and 'PARAMETER stop "<\\"x\\">"' in lines
    assert {"PARAMETER num_ctx 2048", "PARAMETER temperature 0.2", "PARAMETER top_p 0.9"} <= set(lines)
