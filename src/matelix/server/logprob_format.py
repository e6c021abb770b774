"""The engine's `TokenLogprob`s in OpenAI's two shapes: chat (`{"content": [{token, logprob, bytes,
top_logprobs}]}`) and legacy completions (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`).

A token's text is its own decoding (`tokenizer.decode([id])`, special tokens kept), as vLLM reports it; a
token that is only part of a UTF-8 character decodes to U+FFFD, so `bytes` is what clients should join.
"""

from __future__ import annotations

from matelix.inference.handle import TokenLogprob
from matelix.server.openai_schema import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob


class TokenTexts:
    """Token id → text, decoded once per id for one response."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self.tokenizer.decode([token_id])
        return text


def chat_logprobs(entries: list[TokenLogprob], texts: TokenTexts) -> ChatLogprobs:
    def top(token_id: int, logprob: float) -> TopLogprob:
        text = texts(token_id)
        return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode()))

    content = []
    for entry in entries:
        chosen = top(entry.token_id, entry.logprob)
        content.append(ChatTokenLogprob(**chosen.model_dump(), top_logprobs=[top(t, lp) for t, lp in entry.top]))
    return ChatLogprobs(content=content)


def completion_logprobs(entries: list[TokenLogprob], texts: TokenTexts, offset: int = 0) -> CompletionLogprobs:
    """`entries` in text order (an echoed prompt's first token has logprob and alternatives None); offsets
    start at `offset`."""
    out = CompletionLogprobs(tokens=[], token_logprobs=[], top_logprobs=[], text_offset=[])
    for entry in entries:
        text = texts(entry.token_id)
        out.tokens.append(text)
        out.token_logprobs.append(entry.logprob)
        alternatives: dict[str, float] = {}
        for token_id, logprob in entry.top:
            alternatives.setdefault(texts(token_id), logprob)
        out.top_logprobs.append(alternatives if entry.logprob is not None else None)
        out.text_offset.append(offset)
        offset += len(text)
    return out
