"""Rendering a sample to the exact text the model sees, with the character span that is trained.

Chat samples render with the tokenizer's chat template, so training sees what inference will. The MaTeLiX
templates are rendered directly with `render_message` (same text, no Jinja per sample); any other template
goes through `apply_chat_template`, threads of the `dialogplus` format included.
"""

from __future__ import annotations

from dataclasses import dataclass

from matelix.data.load import render_mode_of
from matelix.data.samples import Sample
from matelix.data.template import GENERATION_PROMPT, matelix_chat_template, render_message

DEFAULT_EOS = "</s>"
_MATELIX_TEMPLATES = {matelix_chat_template("chat"): "chat", matelix_chat_template("dialogplus"): "dialogplus"}


@dataclass(frozen=True)
class Rendered:
    """The full text and the `[start, end)` character span whose tokens carry labels."""

    text: str
    start: int
    end: int


def eos_of(tokenizer) -> str:
    return getattr(tokenizer, "eos_token", None) or DEFAULT_EOS


def template_style(tokenizer, template_mode: str) -> str:
    """`column`, `chat`, `dialogplus` (MaTeLiX, rendered directly) or `own` (the tokenizer's own template).

    Threads (`chat`, `dialogplus`) render through a model's own template when it has one; `dialogplus`'s
    per-turn separator is then the template's own end-of-turn token, which it puts after every turn."""
    mode = render_mode_of(template_mode)
    if mode == "column":
        return mode
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    if not template:
        return mode
    ours = _MATELIX_TEMPLATES.get(template)
    if ours is None:
        return "own"
    return mode if mode == "dialogplus" else ours


def render_spans(sample: Sample, tokenizer, style: str, *, train_on_prompt: bool = False) -> Rendered:
    """The sample's text and trained span for a `template_style` result."""
    eos = eos_of(tokenizer)
    if sample.text is not None:
        text = sample.text + eos
        return Rendered(text, 0, len(text))
    messages = sample.messages or []
    if style == "own":
        rendered = _render_own(messages, tokenizer)
    else:
        mode = "dialogplus" if style == "dialogplus" else "chat"
        prompt = "".join(render_message(m["role"], m["content"], eos, mode) for m in messages[:-1])
        last = messages[-1]
        closing = render_message(last["role"], last["content"], eos, mode)
        head = len(prompt) + len(GENERATION_PROMPT)
        text = prompt + closing
        rendered = Rendered(text, head, len(text.rstrip("\n")))
    return Rendered(rendered.text, 0, len(rendered.text)) if train_on_prompt else rendered


def _render_own(messages: list[dict], tokenizer) -> Rendered:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    end = len(text.rstrip())
    if text.startswith(prompt):
        return Rendered(text, len(prompt), end)
    # Templates that rewrite earlier turns (e.g. drop reasoning) break the prefix property: fall back to the
    # last occurrence of the answer itself.
    at = text.rfind(messages[-1]["content"])
    return Rendered(text, at if at >= 0 else 0, end)


def render_sample(sample: Sample, tokenizer, template_mode: str) -> str:
    """The full text of `sample` exactly as the model sees it (`tokenizer` may be None: MaTeLiX, `</s>`)."""
    return render_spans(sample, tokenizer, template_style(tokenizer, template_mode)).text
