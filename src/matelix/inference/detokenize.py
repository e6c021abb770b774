"""Token ids → text, one token at a time, for streaming: whole UTF-8 characters only, stop strings held back.

`IncrementalDetokenizer.push(token_id)` returns the text that token completes ("" while a multi-byte
character is still incomplete). It re-decodes a short window of ids (prefix/read offsets, as vLLM and TGI
do) and holds back text that ends in U+FFFD, so the joined stream equals `tokenizer.decode(all_ids)` —
including the U+FFFD that `decode` shows for bytes that never form a character, which
`tokenizers.decoders.DecodeStream` would drop silently.

`StopStringMatcher.push(text)` returns `(emit, stopped)`: text safe to emit now, and whether a stop string
was hit (then `emit` is the text before it and generation must end). The longest suffix that could still
start a stop string is held back and released by `flush()` once it turns out not to be one.

`TextStream` puts both together; the engine keeps one per request.
"""

from __future__ import annotations

REPLACEMENT_CHAR = "\ufffd"
PROMPT_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Streaming decoder for one request's generated tokens.

    A few prompt tokens seed the window so a first token's leading space (SentencePiece `▁`) survives.
    """

    def __init__(self, tokenizer, prompt_ids: list[int] | tuple[int, ...] = (), *, skip_special_tokens: bool = True):
        self._decode = tokenizer.decode
        self._skip = skip_special_tokens
        self._ids = list(prompt_ids[-PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def _window(self) -> tuple[str, str]:
        prefix = self._decode(self._ids[self._prefix_offset:self._read_offset], skip_special_tokens=self._skip)
        full = self._decode(self._ids[self._prefix_offset:], skip_special_tokens=self._skip)
        return prefix, full

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        prefix, full = self._window()
        if len(full) > len(prefix) and not full.endswith(REPLACEMENT_CHAR):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return full[len(prefix):]
        return ""

    def flush(self) -> str:
        """Text still held at the end of generation (bytes that never formed a character become U+FFFD)."""
        prefix, full = self._window()
        self._prefix_offset = self._read_offset = len(self._ids)
        return full[len(prefix):] if full.startswith(prefix) else full


class StopStringMatcher:
    """Finds stop strings in streamed text without ever emitting part of one."""

    def __init__(self, stops: tuple[str, ...] | list[str]):
        self.stops = tuple(s for s in stops if s)
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[:min(hits)], True
        keep = self._longest_partial_suffix(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def _longest_partial_suffix(self, buf: str) -> int:
        """Length of the longest suffix of `buf` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class TextStream:
    """Detokenizer + stop-string matcher for one request: `push(token) -> (text, stopped)`."""

    def __init__(self, tokenizer, stops: tuple[str, ...] = (), prompt_ids: list[int] | tuple[int, ...] = (), *,
                 skip_special_tokens: bool = True):
        self._detok = IncrementalDetokenizer(tokenizer, prompt_ids, skip_special_tokens=skip_special_tokens)
        self._stops = StopStringMatcher(stops)

    def push(self, token_id: int) -> tuple[str, bool]:
        return self._stops.push(self._detok.push(token_id))

    def finish(self) -> tuple[str, bool]:
        """The remaining text when generation ends, and whether it contained a stop string."""
        text, stopped = self._stops.push(self._detok.flush())
        return (text, True) if stopped else (text + self._stops.flush(), False)
