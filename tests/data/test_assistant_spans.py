"""Assistant-only loss with any chat template: in every sample of a multi-turn conversation exactly that
turn's assistant answer (and the template's end-of-turn token) carries labels, nothing else."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from matelix.data import Sample, tokenize_samples
from matelix.data.load import load_dataset
from matelix.data.template import matelix_chat_template, setup_tokenizer

CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}"
          "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3 = ("{{ '<|begin_of_text|>' }}{% for message in messages %}"
          "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
          " + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
TEMPLATES = {"chatml": (CHATML, "<|im_end|>"), "llama3": (LLAMA3, "<|eot_id|>"),
             "matelix": (matelix_chat_template("chat"), "\n</s>")}
CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": "Hi! How can I help?"},
                {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Blue is a colour."},
                {"role": "user", "content": "And a number?"},
                {"role": "assistant", "content": "Seven."}]


@pytest.fixture
def tokenizer(tiny_model_dir, request):
    template, end = TEMPLATES[request.param]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if request.param != "matelix":
        # the model's own special tokens, as a real ChatML/Llama-3 tokenizer has them
        tok.add_special_tokens({"additional_special_tokens": [t for t in ("<|im_start|>", "<|im_end|>",
                                "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")]})
        tok.chat_template = template
    return tok, end


def _trained(tok, example) -> str:
    return tok.decode([i for i, lb in zip(example["input_ids"], example["labels"], strict=True) if lb != -100])


@pytest.mark.parametrize("tokenizer", list(TEMPLATES), indirect=True)
def test_every_assistant_turn_is_trained_exactly(tokenizer, tmp_path):
    tok, end = tokenizer
    rows = len(tok)
    assert setup_tokenizer(tok) == []
    assert len(tok) == rows  # nothing added to a tokenizer that has its template (or the role tokens)
    path = tmp_path / "conv.jsonl"
    path.write_text(json.dumps({"messages": CONVERSATION}) + "\n")
    loaded = load_dataset(path)
    assert len(loaded.samples) == 3  # one sample per assistant turn, each with its real history
    out = tokenize_samples(loaded.samples, tok, template_mode="auto", chunk_size=1024)
    answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    for example, answer in zip(out.examples, answers, strict=True):
        assert _trained(tok, example) == answer + end
        full = tok.decode(example["input_ids"])
        assert full.count(answer) == 1 and full.rstrip().endswith(answer + end)


def test_a_model_with_its_own_template_gets_no_tokens_and_pads_with_an_existing_one(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = CHATML
    tok.pad_token = None
    vocab = len(tok)
    assert setup_tokenizer(tok) == []
    assert len(tok) == vocab and tok.pad_token == tok.eos_token and tok.chat_template == CHATML


def test_matelix_template_is_used_when_chosen(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = CHATML
    setup_tokenizer(tok, force_template=True)
    assert tok.chat_template == matelix_chat_template("chat")
    example = tokenize_samples([Sample(messages=CONVERSATION[1:3], group="g", row=1)], tok,
                               template_mode="chat").examples[0]
    assert _trained(tok, example) == "Hi! How can I help?\n</s>"
