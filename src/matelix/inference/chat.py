"""Chat messages → prompt token ids with the tokenizer's own chat template, and the tokens that end a turn.

    ids = render_chat(tokenizer, [{"role": "user", "content": "Hi"}], system="Be brief")

* `system` (when given) is prepended as a `role="system"` message — never passed as a template kwarg, so
  the template renders it exactly like a system message in the data it was trained on.
* `content` may be a string or a list of OpenAI text parts (`{"type": "text", "text": ...}`).
* The prompt ends with the generation prompt (`add_generation_prompt=True`), e.g. `<|Assistentin|>\\n`.
* A tokenizer without a template gets the MaTeLiX one (`matelix.data.template`).

Bad messages raise `InvalidMessages` (a ValueError with `.param`, e.g. `messages[1].role`).
"""

from __future__ import annotations

from matelix.data.template import matelix_chat_template

ROLES = ("system", "user", "assistant", "tool")
TOOL_FIELDS = ("tool_calls", "tool_call_id", "name")  # passed on to templates that know tools
# Turn-closing tokens of common chat templates; used as stop tokens when the vocabulary has them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_turn|>",
                      "<|endoftext|>", "<|eom_id|>")


class InvalidMessages(ValueError):
    """Messages that cannot be rendered; `param` names the offending field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def message_text(content: object, where: str) -> str:
    """A message's text: a string, the joined `text` of a list of text parts, or "" for null. The one place
    content parts become text, for every route."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise InvalidMessages(f"{where}.content[{i}] must be a text part {{'type': 'text', 'text': ...}}",
                                      f"{where}.content")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidMessages(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def normalize_messages(messages: list, system: str | None = None) -> list[dict]:
    """Validated `[{"role", "content": str}]` (plus `tool_calls`, `tool_call_id`, `name` where given), with
    `system` prepended as a system message."""
    if not isinstance(messages, list) or not messages:
        raise InvalidMessages("messages must be a non-empty list", "messages")
    out = [{"role": "system", "content": system}] if system else []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidMessages(f"{where} must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidMessages(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role")
        extras = {k: message[k] for k in TOOL_FIELDS if message.get(k) is not None}
        out.append({"role": role, "content": message_text(message.get("content"), where), **extras})
    return out


def render_chat(tokenizer, messages: list, system: str | None = None, tools: list[dict] | None = None) -> list[int]:
    """Prompt token ids for `messages` (plus optional `system`), ending with the generation prompt; `tools`
    (OpenAI function tools) go to templates that render them."""
    chat = normalize_messages(messages, system)
    template = None if getattr(tokenizer, "chat_template", None) else matelix_chat_template("chat")
    try:
        text = tokenizer.apply_chat_template(chat, chat_template=template, add_generation_prompt=True,
                                             tokenize=False, **({"tools": tools} if tools else {}))
    except Exception as exc:  # the template itself refuses (e.g. roles must alternate)
        raise InvalidMessages(f"the model's chat template rejected the messages: {exc}", "messages") from exc
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def stop_token_ids(tokenizer, model) -> set[int]:
    """EOS of tokenizer and generation config, plus end-of-turn tokens the vocabulary knows."""
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return ids
