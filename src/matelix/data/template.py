"""The MaTeLiX chat format (role tokens, pad token, a Jinja chat template) and the tokenizer setup that
decides between it and a model's own template.

Each message renders as `<|Role|>\\n{content}\\n`. In `chat` mode an assistant message is closed by
`{eos}\\n`; in `dialogplus` mode every message is. The generation prompt is `<|Assistentin|>\\n`.
The template is saved with the tokenizer, so `apply_chat_template` renders prompts exactly as training did.
"""

from __future__ import annotations

from typing import Literal

ROLE_TOKENS = {"system": "<|System|>", "user": "<|Benutzer|>", "assistant": "<|Assistentin|>"}
PAD_TOKEN = "<|pad|>"
GENERATION_PROMPT = ROLE_TOKENS["assistant"] + "\n"
TemplateMode = Literal["chat", "dialogplus"]

_ROLE_SWITCH = (
    "{%- if message['role'] == 'system' -%}{{ '<|System|>' }}"
    "{%- elif message['role'] == 'user' -%}{{ '<|Benutzer|>' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ '<|Assistentin|>' }}"
    "{%- else -%}{{ raise_exception('Unknown role: ' + message['role']) }}{%- endif -%}"
)


def matelix_chat_template(mode: TemplateMode = "chat") -> str:
    """The Jinja template for `mode`; `{{ eos_token }}` closes assistant turns (chat) or every turn."""
    close = "{{ eos_token + '\\n' }}"
    if mode == "chat":
        close = "{%- if message['role'] == 'assistant' -%}" + close + "{%- endif -%}"
    return (
        "{%- for message in messages -%}"
        + _ROLE_SWITCH
        + "{{ '\\n' + (message['content'] if message['content'] is string else "
          "message['content'] | map(attribute='text') | join('')) + '\\n' }}"
        + close
        + "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|Assistentin|>\\n' }}{%- endif -%}"
    )


def render_message(role: str, content: str, eos: str, mode: TemplateMode = "chat") -> str:
    """One message as the template renders it (used to locate trained spans without re-rendering)."""
    text = f"{ROLE_TOKENS[role]}\n{content}\n"
    if mode == "dialogplus" or role == "assistant":
        text += f"{eos}\n"
    return text


def uses_own_template(tokenizer, *, force_template: bool = False) -> bool:
    """True when the tokenizer brings a chat template of its own (not a MaTeLiX one) and it is kept."""
    current = getattr(tokenizer, "chat_template", None)
    ours = current in (matelix_chat_template("chat"), matelix_chat_template("dialogplus"))
    return bool(current) and not ours and not force_template


def setup_tokenizer(tokenizer, mode: TemplateMode = "chat", *, force_template: bool = False) -> list[str]:
    """Prepare a tokenizer for training and serving; returns the tokens added (the caller resizes the
    embeddings when this is non-empty).

    A model with a chat template of its own trains and serves with it: nothing is added. Padding then uses
    an existing token (the pad token, else EOS): padded positions have label -100 and attention mask 0, and
    packed rows have no padding inside, so it is never learned. The embedding matrix keeps its size, tied
    embeddings stay tied, and LoRA touches only its adapters.

    Otherwise (no template, a MaTeLiX one, or `force_template`) the MaTeLiX format is installed: role tokens
    (special, never split), a distinct pad token, and the template for `mode`, so a `dialogplus` run saves
    the dialogplus template it trained with.
    """
    if uses_own_template(tokenizer, force_template=force_template):
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        return []
    vocab = tokenizer.get_vocab()
    new_specials = [t for t in ROLE_TOKENS.values() if t not in vocab]
    needs_pad = tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token
    if needs_pad and PAD_TOKEN not in vocab:
        new_specials.append(PAD_TOKEN)
    roles = [t for t in new_specials if t != PAD_TOKEN]
    if roles:
        tokenizer.add_special_tokens({"extra_special_tokens": roles}, replace_extra_special_tokens=False)
    if needs_pad:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.chat_template = matelix_chat_template(mode)
    return new_specials
