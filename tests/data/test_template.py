"""The MaTeLiX chat template and tokenizer setup."""

from transformers import AutoTokenizer

from matelix.data.template import matelix_chat_template, render_message, setup_tokenizer

MESSAGES = [{"role": "system", "content": "Sei nett."}, {"role": "user", "content": "Hallo"},
            {"role": "assistant", "content": "Hi!"}]


def test_chat_mode_closes_only_assistant_turns(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = matelix_chat_template("chat")
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text == "<|System|>\nSei nett.\n<|Benutzer|>\nHallo\n<|Assistentin|>\nHi!\n</s>\n"
    assert text == "".join(render_message(m["role"], m["content"], "</s>", "chat") for m in MESSAGES)


def test_dialogplus_mode_closes_every_turn(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = matelix_chat_template("dialogplus")
    text = tok.apply_chat_template(MESSAGES[1:2], tokenize=False, add_generation_prompt=True)
    assert text == "<|Benutzer|>\nHallo\n</s>\n<|Assistentin|>\n"


def test_content_as_text_parts(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Hal"}, {"type": "text", "text": "lo"}]}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "<|Benutzer|>\nHallo\n"


def test_setup_adds_roles_and_pad_to_a_bare_tokenizer(tiny_model_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel()
    bare = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    bare.add_special_tokens({"eos_token": "</s>"})
    bare.pad_token = bare.eos_token
    added = setup_tokenizer(bare)
    assert added == ["<|System|>", "<|Benutzer|>", "<|Assistentin|>", "<|pad|>"]
    assert bare.pad_token == "<|pad|>"
    assert len(bare.encode("<|Benutzer|>", add_special_tokens=False)) == 1
    assert bare.chat_template == matelix_chat_template("chat")
    assert setup_tokenizer(bare) == []  # idempotent


def test_setup_keeps_a_models_own_template_unless_forced(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{{ 'own' }}"
    setup_tokenizer(tok)
    assert tok.chat_template == "{{ 'own' }}"
    setup_tokenizer(tok, "dialogplus", force_template=True)
    assert tok.chat_template == matelix_chat_template("dialogplus")


def test_dialogplus_setup_replaces_the_matelix_chat_template(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.chat_template == matelix_chat_template("chat")
    setup_tokenizer(tok, "dialogplus")
    assert tok.chat_template == matelix_chat_template("dialogplus")
    setup_tokenizer(tok, "chat")
    assert tok.chat_template == matelix_chat_template("chat")
