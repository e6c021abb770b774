"""The Ollama `Modelfile` written next to a GGUF export: FROM, a TEMPLATE in Ollama's Go-template syntax,
the default SYSTEM prompt when the chat template has one, stop tokens and parameters.

Ollama cannot run a Jinja chat template, so the template is translated, for the two families the lab knows:
ChatML (`<|im_start|>role ... <|im_end|>`, SmolLM2 and many others) and the MaTeLiX templates
(`<|Role|>\\n...\\n`, EOS after assistant turns or after every turn). Which one applies is not guessed from
the text: the model's own template renders a probe conversation and must give exactly what the
translation writes (`template_kind`); anything else gets no TEMPLATE and a comment saying so (Ollama then
falls back to its own detection from the GGUF metadata).
"""

from __future__ import annotations

from matelix.data.template import ROLE_TOKENS, render_message

_PROBE = [{"role": "system", "content": "S1"}, {"role": "user", "content": "U1"},
          {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]

CHATML_TEMPLATE = ("{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                   "<|im_start|>assistant\n")


def matelix_go_template(eos: str, every_turn: bool) -> str:
    roles = (f'{{{{ if eq .Role "system" }}}}{ROLE_TOKENS["system"]}'
             f'{{{{ else if eq .Role "user" }}}}{ROLE_TOKENS["user"]}'
             f'{{{{ else }}}}{ROLE_TOKENS["assistant"]}{{{{ end }}}}')
    close = f"{eos}\n" if every_turn else f'{{{{ if eq .Role "assistant" }}}}{eos}\n{{{{ end }}}}'
    return f"{{{{ range .Messages }}}}{roles}\n{{{{ .Content }}}}\n{close}{{{{ end }}}}{ROLE_TOKENS['assistant']}\n"


def _chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
        "<|im_start|>assistant\n"


def _matelix(messages: list[dict], eos: str, mode: str) -> str:
    return "".join(render_message(m["role"], m["content"], eos, mode) for m in messages) + \
        ROLE_TOKENS["assistant"] + "\n"


def _render(tokenizer, messages: list[dict]) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    except Exception:  # noqa: BLE001 - a template that refuses the probe is simply not one we translate
        return None


def template_kind(tokenizer) -> tuple[str | None, str | None, str | None]:
    """(kind, Go template, default system prompt) when the model's template is one we translate exactly."""
    if not getattr(tokenizer, "chat_template", None):
        return None, None, None
    eos = tokenizer.eos_token or ""
    full = _render(tokenizer, _PROBE)
    if full == _chatml(_PROBE):
        no_system = _render(tokenizer, _PROBE[1:]) or ""
        rest = _chatml(_PROBE[1:])
        default = None
        if no_system != rest and no_system.endswith(rest) and no_system.startswith("<|im_start|>system\n"):
            default = no_system[len("<|im_start|>system\n"):-len(rest)].removesuffix("<|im_end|>\n")
            if _chatml([{"role": "system", "content": default}, *_PROBE[1:]]) != no_system:
                return None, None, None
        elif no_system != rest:
            return None, None, None
        return "chatml", CHATML_TEMPLATE, default
    for mode, every in (("chat", False), ("dialogplus", True)):
        if full == _matelix(_PROBE, eos, mode) and _render(tokenizer, _PROBE[1:]) == _matelix(_PROBE[1:], eos, mode):
            return f"matelix-{mode}", matelix_go_template(eos, every), None
    return None, None, None


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ollama_modelfile(gguf_name: str, tokenizer, stop_tokens: list[str], context_length: int,
                     generation_config=None) -> tuple[str, str | None]:
    """The Modelfile text and the template kind it translated (None when it wrote no TEMPLATE)."""
    kind, template, system = template_kind(tokenizer)
    lines = ["# Ollama Modelfile written by MaTeLiX Lab. Create the model with: ollama create NAME -f Modelfile",
             f"FROM ./{gguf_name}", ""]
    if template:
        lines += [f"# chat template: {kind} (translated from the model's Jinja template)",
                  f'TEMPLATE """{template}"""', ""]
    else:
        lines += ["# The model's chat template is not one MaTeLiX Lab translates (ChatML, MaTeLiX);",
                  "# Ollama picks a template from the GGUF's tokenizer.chat_template metadata.", ""]
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    lines += [f"PARAMETER stop {_quote(t)}" for t in stop_tokens]
    lines.append(f"PARAMETER num_ctx {context_length}")
    gen = generation_config
    for key, name in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                      ("repetition_penalty", "repeat_penalty")):
        value = getattr(gen, key, None) if gen is not None and getattr(gen, "do_sample", False) else None
        if value is not None:
            lines.append(f"PARAMETER {name} {value}")
    return "\n".join(lines) + "\n", kind
