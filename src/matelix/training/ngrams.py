"""N-gram vocabulary optimisation: mine frequent phrases of the training texts and add them as tokens.

    totals = apply_ngrams(tokenizer, model, texts, config, run_dir, log)

1. Encode the (rendered) texts and count the frequent closed token-id n-grams of lengths 2..ngrams.max_len
   (32 for code-heavy texts) with `ngram_count`; special tokens split the counting, so no phrase holds a
   role/eos/pad token, and windows that join lines are never counted.
2. Choose greedily by the tokens a phrase would still save: free occurrences × (n − 1), where occurrences
   already replaced by a chosen phrase do not count, so substrings, shifted windows of a long repeated
   passage and near-duplicates of a chosen phrase lose their worth. A phrase is the raw text span of an
   occurrence (spaces and newlines included), must not start or end inside a word, must encode back to
   exactly its token ids and decode to itself as an added token.
3. Add the phrases to a scratch copy of the tokenizer as plain added tokens (matched on the raw text, not
   stripped, not special), re-encode the texts, keep phrases used at least `ngrams.min_count` times and not
   clearly more often than they occur as n-grams (they would match inside words they never belonged to),
   check that every text still decodes to itself, and refill the freed slots (a few rounds).
4. With the model (a run's, or the folder's for `matelix ngrams mine`): keep only the phrases it reads more
   cheaply as one mean-initialised token than as their pieces (`ngram_screen`), and measure again.
5. Add the survivors to the real tokenizer, grow the model with mean-initialised rows
   (`embeddings.resize_with_mean_init`) and write `ngram_token_map.json` with the measured totals.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer

from matelix.training.config import NgramOptions
from matelix.training.embeddings import resize_with_mean_init
from matelix.training.ngram_count import (
    Boundaries,
    OccurrenceIndex,
    count_ngrams,
    layout,
    looks_like_code,
)
from matelix.training.ngram_screen import screen_phrases
from matelix.training.rundir import write_json_atomic

MAP_FILE = "ngram_token_map.json"
CODE_NGRAM_MAX = 32  # code repeats long spans (indentation + keywords + punctuation); prose rarely does
TRIAL_ROUNDS = 3  # encode-and-prune passes; each refills the slots freed by the one before
POSITION_CACHE = 20_000_000  # occurrence positions kept between looks at a candidate (8 bytes each)
OVERUSE = 1.1  # a phrase used > 10% more often than mined matches where it was no n-gram
_WORD = re.compile(r"\w")
_PROBE = "a"  # an ordinary token text every decoder passes through unchanged
_LINE_BREAKS = re.compile(r"\n+")


@dataclass
class Phrase:
    """A mined phrase: its raw text, the token ids it replaces, how often it was mined and used."""

    text: str
    source_ids: list[int]
    mined: int  # occurrences left to it by the phrases chosen before it
    occurrences: int  # all occurrences as this token sequence
    used: int = 0
    token_id: int = -1
    loss_change: float | None = None  # mean nats per occurrence for the base model (`ngram_screen`)

    @property
    def savings(self) -> int:
        return self.used * (len(self.source_ids) - 1)


@dataclass
class MineResult:
    """Chosen phrases and the measured token counts of the mined texts before and after adding them."""

    phrases: list[Phrase]
    texts: int
    tokens_before: int
    tokens_after: int
    max_len: int
    code_heavy: bool
    seconds: float
    left_out: int = 0  # phrases the model's check (`ngram_screen`) left out

    @property
    def saved_pct(self) -> float:
        return 100.0 * (1 - self.tokens_after / self.tokens_before) if self.tokens_before else 0.0

    def totals(self) -> dict:
        return {"texts": self.texts, "added_tokens": len(self.phrases), "tokens_before": self.tokens_before,
                "tokens_after": self.tokens_after, "saved_tokens": self.tokens_before - self.tokens_after,
                "saved_pct": round(self.saved_pct, 2), "max_len": self.max_len, "code_heavy": self.code_heavy,
                "left_out_by_model_check": self.left_out, "seconds": round(self.seconds, 2)}


def _sample(texts: Sequence[str], max_samples: int) -> list[str]:
    """At most `max_samples` texts, evenly spread over the dataset (deterministic)."""
    texts = [t for t in texts if t]
    if len(texts) <= max_samples:
        return texts
    return [texts[i] for i in np.linspace(0, len(texts) - 1, max_samples).astype(int)]


class _ReservedText:
    """Texts of special and earlier added tokens, which a phrase must never contain or fuse with: next to
    one in raw text, a phrase ending in its first characters would be matched first (leftmost-longest) and
    swallow the start of, say, a role token."""

    def __init__(self, tokenizer):
        strings = sorted({s for s in [*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()] if s},
                         key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, strings))) if strings else None
        self.prefixes = {s[:k] for s in strings for k in range(1, len(s))}
        self.suffixes = {s[-k:] for s in strings for k in range(1, len(s))}
        self.longest = len(strings[0]) if strings else 0

    def touched_by(self, phrase: str) -> bool:
        if self.pattern is None:
            return False
        return bool(self.pattern.search(phrase)) or any(
            phrase[-k:] in self.prefixes or phrase[:k] in self.suffixes
            for k in range(1, min(self.longest, len(phrase) + 1)))


def _lines_ok(phrase: str, code: bool) -> bool:
    """Line breaks at a phrase's edges (with the indentation around them) are fine; one inside joins two
    lines: never in prose, at most one in code (the end of a line into the start of the next)."""
    return len(_LINE_BREAKS.findall(phrase.strip())) <= (1 if code else 0)


def _non_overlapping(pos: np.ndarray, n: int) -> np.ndarray:
    """Greedy left-to-right occurrences that do not overlap each other (runs like repeated spaces)."""
    if pos.size < 2 or np.all(np.diff(pos) >= n):
        return pos
    kept, last = [], -n
    for p in pos.tolist():
        if p >= last + n:
            kept.append(p)
            last = p
    return np.asarray(kept, dtype=np.int64)


class _Candidates:
    """Candidates in lazy-greedy order of the tokens they would still save.

    The corpus positions replaced by chosen phrases are marked covered; a candidate only counts the
    occurrences that touch no covered position. So substrings, shifted windows of one long repeated passage
    and other near-duplicates of a chosen phrase lose their worth instead of filling the vocabulary.
    """

    def __init__(self, counts, texts: list[str], starts: np.ndarray, tokenizer, opts: NgramOptions, code: bool):
        self.counts, self.texts, self.starts = counts, texts, starts
        self.offsets: dict[int, np.ndarray] = {}  # text index -> (T, 2) character offsets, encoded on demand
        self.positions: dict[int, np.ndarray] = {}  # candidate -> free occurrences when last looked at
        self.cached = 0
        self.index = OccurrenceIndex(counts.ids)
        self.covered = np.zeros(counts.ids.size, dtype=bool)
        self.backend = tokenizer.backend_tokenizer
        self.opts, self.code = opts, code
        self.reserved = _ReservedText(tokenizer)
        self.heap = list(zip((-counts.score).tolist(), range(counts.count.size), strict=True))
        heapq.heapify(self.heap)
        self.seen: set[str] = set()

    def _span(self, k: int) -> tuple[str, str, str]:
        """Candidate k's raw text at its first occurrence, with the characters just before and after it."""
        pos = int(self.counts.position[k])
        t = int(np.searchsorted(self.starts, pos, side="right")) - 1
        first, last = pos - self.starts[t], pos - self.starts[t] + int(self.counts.length[k]) - 1
        if t not in self.offsets:
            enc = self.backend.encode(self.texts[t], add_special_tokens=False)
            self.offsets[t] = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
        text, a, b = self.texts[t], self.offsets[t][first, 0], self.offsets[t][last, 1]
        return text[a:b], text[a - 1:a], text[b:b + 1]

    def _acceptable(self, ids: list[int], phrase: str, before: str, after: str) -> bool:
        inside_word = bool(_WORD.match(phrase[:1]) and _WORD.match(before)) or bool(
            _WORD.match(phrase[-1:]) and _WORD.match(after))
        return (len(phrase) >= self.opts.min_chars and not inside_word and "\ufffd" not in phrase
                and phrase not in self.seen and self.backend.token_to_id(phrase) is None
                and _lines_ok(phrase, self.code)
                and not self.reserved.touched_by(phrase)
                and self.backend.encode(phrase, add_special_tokens=False).ids == ids and self._decodes(phrase))

    def _decodes(self, phrase: str) -> bool:
        """Whether the phrase as an added token decodes to itself after another token. Its content goes
        through the decoder: a byte-level decoder maps a token's characters through its byte alphabet when
        all of them are in it (`Gemüse,` would come back garbled); a SentencePiece-style decoder strips the
        leading space of a text's first token only, hence the token in front."""
        decoder = self.backend.decoder
        return decoder is None or decoder.decode([_PROBE, phrase]) == decoder.decode([_PROBE]) + phrase

    def _free(self, k: int, ids: list[int]) -> np.ndarray:
        """Non-overlapping occurrences of candidate k that touch no covered position. Covered positions only
        grow, so the positions found at an earlier look are filtered again instead of searched anew."""
        pos = self.positions.pop(k, None)
        if pos is None:
            pos = self.index.find(ids)
        else:
            self.cached -= pos.size
        pos = pos[~self.covered[pos[:, None] + np.arange(len(ids))].any(axis=1)]
        if self.cached + pos.size <= POSITION_CACHE:
            self.positions[k] = pos
            self.cached += pos.size
        return _non_overlapping(pos, len(ids))

    def take(self, n: int) -> list[Phrase]:
        """The next `n` acceptable phrases in order of the tokens they still save."""
        chosen: list[Phrase] = []
        while self.heap and len(chosen) < n:
            neg_score, k = heapq.heappop(self.heap)
            ids = self.counts.tokens(k)
            free = self._free(k, ids)
            if free.size < self.opts.min_count:
                continue
            if free.size * (len(ids) - 1) < -neg_score:  # worth less than queued: re-queue at its true worth
                heapq.heappush(self.heap, (-free.size * (len(ids) - 1), k))
                continue
            phrase, before, after = self._span(k)
            if not self._acceptable(ids, phrase, before, after):
                continue
            self.seen.add(phrase)
            chosen.append(Phrase(phrase, ids, int(free.size), int(self.counts.count[k])))
            self.covered[free[:, None] + np.arange(len(ids))] = True
        return chosen


def _added_token(phrase: str):
    """Matched on raw text, never stripped, not special (kept by `skip_special_tokens`). A phrase that starts
    and ends with a word character must not match inside a longer word (`print` in `reprint`)."""
    whole_word = bool(_WORD.match(phrase[0]) and _WORD.match(phrase[-1]))
    return AddedToken(phrase, single_word=whole_word, lstrip=False, rstrip=False, normalized=False,
                      special=False)


def _trial(tokenizer, texts: list[str], phrases: list[Phrase], *, verify: bool = False) -> tuple[int, set[int]]:
    """Encode `texts` with the phrases added to a scratch tokenizer and set each phrase's use count.

    Returns the total token count and, with `verify`, the indices of phrases used in a text that no longer
    decodes to itself (texts the unchanged tokenizer cannot round-trip either are not held against them).
    """
    scratch = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    scratch.add_tokens([_added_token(p.text) for p in phrases])
    index_of = {scratch.token_to_id(p.text): i for i, p in enumerate(phrases)}
    encoded = scratch.encode_batch_fast(texts, add_special_tokens=False)
    flat = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encoded]) if encoded else np.zeros(0, int)
    used = np.bincount(flat, minlength=scratch.get_vocab_size(with_added_tokens=True))
    for token_id, i in index_of.items():
        phrases[i].used = int(used[token_id])
    broken: set[int] = set()
    if verify:
        decoded = scratch.decode_batch([e.ids for e in encoded], skip_special_tokens=False)
        backend = tokenizer.backend_tokenizer
        for text, enc, back in zip(texts, encoded, decoded, strict=True):
            if back != text and backend.decode(backend.encode(text, add_special_tokens=False).ids,
                                               skip_special_tokens=False) == text:
                broken.update(index_of[i] for i in enc.ids if i in index_of)
    return int(flat.size), broken


def _token_texts(backend) -> list[str]:
    """Each token id's text as it reads in running text (after another token, so a SentencePiece-style
    decoder keeps its leading space)."""
    strings = [backend.id_to_token(i) or "" for i in range(backend.get_vocab_size())]
    decoder = backend.decoder
    if decoder is None:
        return strings
    head = decoder.decode([_PROBE])
    return [decoder.decode([_PROBE, s])[len(head):] for s in strings]


def _length_progress(log: Callable[[str], None]):
    def progress(n: int, found: int) -> None:
        if n % 4 == 0:  # every length would flood a run's log with up to 32 lines
            log(f"n-grams: length {n}: {found} frequent")

    return progress


def mine(tokenizer, texts: Sequence[str], opts: NgramOptions, log: Callable[[str], None] = print,
         model=None) -> MineResult:
    """Choose up to `opts.top_k` phrases for `texts` and measure the token counts they give. With `model`,
    keep only the phrases it reads more cheaply than their pieces (`ngram_screen`; the model is left as it
    was)."""
    started = time.perf_counter()
    texts = _sample(texts, opts.max_samples)
    code = looks_like_code(texts)
    max_len = max(opts.max_len, CODE_NGRAM_MAX) if code else opts.max_len
    log(f"n-grams: encoding {len(texts)} texts ({sum(map(len, texts)) / 1e6:.2f} M characters,"
        f" {'code-heavy, ' if code else ''}phrases up to {max_len} tokens)")
    backend = tokenizer.backend_tokenizer
    # a padded or truncated call of the transformers tokenizer (apply_chat_template(padding=True), say)
    # leaves that setting on its backend; mining needs every text's own tokens, whole
    backend.no_padding()
    backend.no_truncation()
    encoded = backend.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.array([len(e.ids) for e in encoded], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)  # +1: separator
    special_ids = set(tokenizer.all_special_ids) | {tokenizer.convert_tokens_to_ids(t)
                                                    for t in tokenizer.get_added_vocab()}
    ids = layout((e.ids for e in encoded), special_ids)
    del encoded
    tokens_before = int(lengths.sum())
    token_texts = _token_texts(backend)
    counts = count_ngrams(ids, max_len, opts.min_count, Boundaries.of(ids, token_texts),
                          max_inner_breaks=1 if code else 0, progress=_length_progress(log))
    log(f"n-grams: {tokens_before} tokens, {counts.count.size} candidate phrases")

    candidates = _Candidates(counts, texts, starts, tokenizer, opts, code)
    kept: list[Phrase] = []
    tokens_after: int | None = None  # measured for exactly `kept`
    for round_no in range(1, TRIAL_ROUNDS + 1):
        fresh = candidates.take(opts.top_k - len(kept))
        if not fresh and tokens_after is not None:
            break
        trial = kept + fresh
        if not trial:
            break
        tokens, broken = _trial(tokenizer, texts, trial, verify=True)
        kept = [p for i, p in enumerate(trial)
                if i not in broken and opts.min_count <= p.used <= OVERUSE * p.occurrences + 1]
        tokens_after = tokens if len(kept) == len(trial) else None
        log(f"n-grams: round {round_no}: {len(trial)} phrases tried, {len(kept)} kept"
            f" ({len(broken)} broke decoding), {tokens_before} → {tokens} tokens")
    while kept and tokens_after is None:  # measure the final set; every text must still decode to itself
        tokens, broken = _trial(tokenizer, texts, kept, verify=True)
        kept = [p for i, p in enumerate(kept) if i not in broken]
        tokens_after = tokens if not broken else None
    left_out = 0
    if kept and model is not None and opts.screen_tokens > 0:
        checked, change = screen_phrases(model, tokenizer, texts, kept, opts.screen_tokens, log)
        for p in kept:
            p.loss_change = change.get(p.text)
        left_out = len(kept) - len(checked)
        while checked and left_out:  # the others' occurrences are now the kept phrases' to use
            tokens_after, broken = _trial(tokenizer, texts, checked, verify=True)
            fewer = [p for i, p in enumerate(checked) if i not in broken and p.used >= opts.min_count]
            if len(fewer) == len(checked):
                break
            left_out += len(checked) - len(fewer)
            checked = fewer
        kept = checked
    if not kept:
        tokens_after = tokens_before
    kept.sort(key=lambda p: -p.savings)
    return MineResult(kept, len(texts), tokens_before, tokens_after, max_len, code,
                      time.perf_counter() - started, left_out)


def add_phrases(tokenizer, model, phrases: list[Phrase]) -> None:
    """Add the phrases to the tokenizer and grow the model with rows initialised from their source tokens."""
    tokenizer.add_tokens([_added_token(p.text) for p in phrases])
    for p in phrases:
        p.token_id = tokenizer.convert_tokens_to_ids(p.text)
    if model is not None:
        rows = model.get_input_embeddings().weight.shape[0]
        resize_with_mean_init(model, max(len(tokenizer), rows), {p.token_id: p.source_ids for p in phrases})


def token_map(result: MineResult, vocab_before: int, vocab_after: int) -> dict:
    """The content of `ngram_token_map.json`."""
    return {
        "totals": {**result.totals(), "vocab_before": vocab_before, "vocab_after": vocab_after},
        "tokens": [{"phrase": p.text, "id": p.token_id if p.token_id >= 0 else None, "original_ids": p.source_ids,
                    "count": p.used, "occurrences": p.occurrences, "mined_count": p.mined,
                    "estimated_savings": p.savings, "loss_change_nats": p.loss_change} for p in result.phrases],
    }


def apply_ngrams(tokenizer, model, texts: list[str], config, run_dir: Path,
                 log: Callable[[str], None] = print) -> dict:
    """Mine `texts`, add the phrases to `tokenizer` and `model` in place, write `run_dir/ngram_token_map.json`.

    Call before tokenising the training data (and before wrapping the model in LoRA). Returns the totals.
    """
    vocab_before = len(tokenizer)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        log("n-grams: skipped: mining needs a fast (tokenizers-based) tokenizer; this model has none")
        return {"skipped": "no fast tokenizer", "added_tokens": 0, "vocab_before": vocab_before,
                "vocab_after": vocab_before}
    result = mine(tokenizer, texts, config.ngrams, log, model=model)
    add_phrases(tokenizer, model, result.phrases)
    data = token_map(result, vocab_before, len(tokenizer))
    write_json_atomic(Path(run_dir) / MAP_FILE, data)
    log(f"n-grams: added {len(result.phrases)} tokens; {result.tokens_before} → {result.tokens_after} tokens"
        f" on {result.texts} texts (−{result.saved_pct:.1f}%) in {result.seconds:.1f}s")
    return data["totals"]
