"""Grammar-constrained decoding with xgrammar: a request's output is kept inside a JSON schema, any JSON,
a regular expression, a fixed set of choices or an EBNF grammar by masking, at every step, the tokens that
would leave it.

    spec = GrammarSpec("json_schema", json.dumps(schema), param="response_format")
    compiled = compile_grammar(tokenizer, vocab_size, stop_ids, spec)   # cached per tokenizer; GrammarRejected
    SamplingParams(..., grammar=compiled)                               # the engine's RowSampler does the rest

Why xgrammar: it compiles JSON schema / regex / EBNF against the tokenizer's whole vocabulary once, and its
per-step mask is a bitmask filled in microseconds, so only constrained rows of a batch pay anything.
The matcher lets stop tokens through only once the grammar is complete, so a constrained answer that
ends by itself always parses; one cut off by `max_tokens` ends with finish_reason "length".
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from dataclasses import dataclass

KINDS = ("json_schema", "json_object", "regex", "choice", "ebnf", "tool_call", "tool_tags")
_lock = threading.Lock()
_compilers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class GrammarRejected(ValueError):
    """A schema, pattern or grammar that cannot be compiled; `param` names the request field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class GrammarSpec:
    """What to constrain to: `kind` one of KINDS, `source` the schema (JSON text), pattern, choices (JSON list),
    grammar, or for the tool kinds a JSON object (see `tool_call_grammar`); `param` the request field it came
    from (for errors); `strict` false lets objects hold properties the schema does not forbid (JSON Schema's
    own reading) instead of only the listed ones."""

    kind: str
    source: str = ""
    param: str = "response_format"
    strict: bool = True

    @classmethod
    def choices(cls, options: list[str], param: str = "guided_choice") -> GrammarSpec:
        return cls("choice", json.dumps(options), param)


def _compiler(tokenizer, vocab_size: int, stop_ids: frozenset[int]):
    import xgrammar as xgr

    with _lock:
        key = (vocab_size, stop_ids)
        per_tokenizer = _compilers.setdefault(tokenizer, {})
        compiler = per_tokenizer.get(key)
        if compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids))
            compiler = per_tokenizer[key] = xgr.GrammarCompiler(info, max_threads=2)
        return compiler


@dataclass(frozen=True)
class Grammar:
    """A compiled grammar and the token ids it must never produce (see `control_tokens`)."""

    compiled: object
    banned: tuple[int, ...] = ()


JSON_KINDS = ("json_object", "json_schema", "tool_call", "tool_tags")
# Raw control characters other than tab/newline/return: xgrammar's JSON strings let them through, but
# JSON forbids them unescaped, so a JSON answer containing one would not parse.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_control_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def control_tokens(tokenizer, vocab_size: int) -> tuple[int, ...]:
    """Ids (below `vocab_size`) whose text holds a raw control character; computed once per tokenizer."""
    with _lock:
        found = _control_tokens.get(tokenizer)
        if found is None:
            size = min(vocab_size, len(tokenizer))
            texts = tokenizer.batch_decode([[i] for i in range(size)])
            found = _control_tokens[tokenizer] = tuple(i for i, t in enumerate(texts) if CONTROL.search(t))
        return found


def compile_grammar(tokenizer, vocab_size: int, stop_ids: frozenset[int] | set[int], spec: GrammarSpec) -> Grammar:
    """The compiled `spec` (xgrammar caches compilations per source), with the tokens JSON kinds must not
    produce. Raises GrammarRejected."""
    compiled = _compile(tokenizer, vocab_size, stop_ids, spec)
    return Grammar(compiled, control_tokens(tokenizer, vocab_size) if spec.kind in JSON_KINDS else ())


def _compile(tokenizer, vocab_size: int, stop_ids: frozenset[int] | set[int], spec: GrammarSpec):
    compiler = _compiler(tokenizer, vocab_size, frozenset(stop_ids))
    try:
        if spec.kind == "json_object":
            return compiler.compile_builtin_json_grammar()
        if spec.kind == "json_schema":
            return compiler.compile_json_schema(spec.source, any_whitespace=False, strict_mode=spec.strict)
        if spec.kind == "regex":
            return compiler.compile_regex(spec.source)
        if spec.kind == "choice":
            options = json.loads(spec.source)
            return compiler.compile_regex("|".join(f"(?:{_literal(o)})" for o in options))
        if spec.kind == "ebnf":
            return compiler.compile_grammar(spec.source)
        if spec.kind in ("tool_call", "tool_tags"):
            return compiler.compile_grammar(tool_call_grammar(spec))
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:  # xgrammar reports bad input as RuntimeError
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise GrammarRejected(f"{spec.param}: cannot be used to constrain the output: {reason}", spec.param) from exc
    raise GrammarRejected(f"{spec.param}: unknown grammar kind {spec.kind!r}", spec.param)


def tool_call_grammar(spec: GrammarSpec):
    """The grammar of a tool kind. `tool_call` (tool_choice required / named): the answer is exactly
    `begin` + a JSON value following `schema` + `end`, source `{"begin", "schema", "end"}`. `tool_tags`
    (auto with strict functions): free text in which each `trigger` starts one of the `tags`, whose JSON
    content follows its schema, source `{"triggers": [...], "tags": [{"begin", "schema", "end"}, ...]}`
    (xgrammar's structural tags). JSON is compact (`", "` and `": "` separators), as for json_schema."""
    import xgrammar as xgr

    source = json.loads(spec.source)

    def value(schema: dict):
        return xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=spec.strict)

    if spec.kind == "tool_call":
        parts = [xgr.Grammar.from_regex(_literal(source["begin"])) if source["begin"] else None,
                 value(source["schema"]), xgr.Grammar.from_regex(_literal(source["end"])) if source["end"] else None]
        return xgr.Grammar.concat(*[p for p in parts if p is not None])
    tags = [{"type": "tag", "begin": t["begin"], "end": t["end"],
             "content": {"type": "grammar", "grammar": str(value(t["schema"]))}} for t in source["tags"]]
    return xgr.Grammar.from_structural_tag(json.dumps({"type": "structural_tag", "format": {
        "type": "triggered_tags", "triggers": source["triggers"], "tags": tags}}))


def _literal(text: str) -> str:
    """`text` as a regex matching exactly it, in xgrammar's dialect (Python's `re.escape` also escapes
    newlines and spaces, escapes xgrammar does not know)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)


class GrammarMask:
    """One request's matcher and bitmask: `apply(logits)` masks a (V,) row in place, `accept(token)` advances."""

    def __init__(self, grammar: Grammar, vocab_size: int):
        import torch
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = xgr.GrammarMatcher(grammar.compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.vocab_size = vocab_size
        self.banned = torch.tensor(grammar.banned, dtype=torch.long) if grammar.banned else None

    def apply(self, logits):
        self.matcher.fill_next_token_bitmask(self.bitmask, 0)
        row = logits.view(1, -1)
        self._xgr.apply_token_bitmask_inplace(row, self.bitmask.to(logits.device), vocab_size=self.vocab_size)
        if self.banned is not None:
            logits[self.banned.to(logits.device)] = float("-inf")
        return logits

    def accept(self, token: int) -> None:
        if not self.matcher.accept_token(token):
            raise RuntimeError(f"token {token} does not fit the grammar")

    @property
    def done(self) -> bool:
        """The grammar accepted a stop token: nothing more may follow."""
        return self.matcher.is_terminated()
