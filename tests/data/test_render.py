"""Rendering samples: the MaTeLiX templates directly, any other template through apply_chat_template."""

from transformers import AutoTokenizer

from matelix.data import Sample, render_sample
from matelix.data.render import render_spans, template_style
from matelix.data.template import matelix_chat_template

CHAT = Sample(messages=[{"role": "system", "content": "Sei nett."}, {"role": "user", "content": "Hallo"},
                        {"role": "assistant", "content": "Hi!"}], group="1", row=1)


def test_matelix_rendering_equals_apply_chat_template(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert template_style(tok, "chat") == "chat"
    assert render_sample(CHAT, tok, "chat") == tok.apply_chat_template(CHAT.messages, tokenize=False)
    tok.chat_template = matelix_chat_template("dialogplus")
    assert template_style(tok, "auto") == "dialogplus"
    assert render_sample(CHAT, tok, "chat") == tok.apply_chat_template(CHAT.messages, tokenize=False)


def test_trained_span_is_the_final_answer_and_its_eos():
    r = render_spans(CHAT, None, "chat")
    assert r.text[:r.start].endswith("<|Assistentin|>\n")
    assert r.text[r.start:r.end] == "Hi!\n</s>"
    full = render_spans(CHAT, None, "chat", train_on_prompt=True)
    assert (full.start, full.end) == (0, len(full.text))


def test_a_models_own_template_is_used_for_chat(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% if m['role'] == 'assistant' %}"
                         "{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    assert template_style(tok, "chat") == "own"
    r = render_spans(CHAT, tok, "own")
    assert r.text == "[system]Sei nett.\n[user]Hallo\n[assistant]Hi!</s>\n"
    assert r.text[r.start:r.end] == "Hi!</s>"
    # dialogplus threads render through the model's own template too (its own end-of-turn token)
    assert template_style(tok, "dialogplus") == "own"
    assert render_sample(CHAT, tok, "dialogplus") == r.text
    assert render_sample(CHAT, None, "dialogplus").startswith("<|System|>\nSei nett.\n</s>\n")


def test_column_text_ends_with_eos(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert render_sample(Sample(text="Ein Satz.", group="r", row=1), tok, "column") == "Ein Satz.</s>"
