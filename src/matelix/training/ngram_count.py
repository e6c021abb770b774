"""Count frequent token-id n-grams with vectorised numpy rolling hashes.

All token ids of a corpus are laid out in one int64 array with -1 separators (between texts and in place of
special tokens, so no n-gram spans them). For each length n a 64-bit polynomial hash of the window starting
at every position is extended from the (n-1) hash in one vectorised step. An (n+1)-gram can only be frequent
when both of its n-gram halves are, so only positions whose prefix and suffix windows survived are hashed
and counted (`np.unique`): the work shrinks quickly with n, which is what makes long spans for code cheap.
Only closed n-grams are returned (none of their one-token-longer extensions has the same count), and
`OccurrenceIndex` finds every position of a chosen sequence again for the greedy choice in `ngrams`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio); arithmetic wraps mod 2**64
SEPARATOR = -1

# Lines that look like program text: indented, ending in block/statement punctuation, or keyword-led.
_CODE_LINE = re.compile(r"^(?:\s{2,}|\t)\S|[{};:)\]]\s*$|^\s*(?:def|class|import|from|return|if|for|while|"
                        r"function|const|let|var|public|private|#include|SELECT|print)\b")
CODE_SHARE = 0.3
_WORD_CHAR = re.compile(r"\w")


@dataclass(frozen=True)
class NgramCounts:
    """Frequent n-grams: parallel arrays of length, a position where it occurs in `ids`, and its count."""

    ids: np.ndarray  # (L,) int64, the laid-out corpus
    length: np.ndarray  # (K,) int64
    position: np.ndarray  # (K,) int64
    count: np.ndarray  # (K,) int64

    def tokens(self, k: int) -> list[int]:
        """The token ids of candidate k."""
        start = int(self.position[k])
        return self.ids[start:start + int(self.length[k])].tolist()

    @property
    def score(self) -> np.ndarray:
        """Tokens saved if every occurrence were replaced by one token: count × (n − 1)."""
        return self.count * (self.length - 1)


def layout(sequences: Iterable[Sequence[int]], excluded_ids: Iterable[int] = ()) -> np.ndarray:
    """Concatenate token sequences with separators; excluded ids (special tokens) become separators too."""
    parts = []
    for seq in sequences:
        parts.append(np.asarray(seq, dtype=np.int64))
        parts.append(np.array([SEPARATOR], dtype=np.int64))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    excluded = np.fromiter(excluded_ids, dtype=np.int64)
    if excluded.size:
        ids[np.isin(ids, excluded)] = SEPARATOR
    return ids


@dataclass(frozen=True)
class Boundaries:
    """Per-position token facts from the token texts: where line-break runs start and where a phrase may
    begin or end without cutting a word."""

    breaks: np.ndarray  # (L,) int8: 1 where a token begins a new run of line breaks
    left_ok: np.ndarray  # (L,) bool: a phrase starting here does not start inside a word
    right_ok: np.ndarray  # (L,) bool: a phrase ending here does not end inside a word

    @classmethod
    def of(cls, ids: np.ndarray, token_texts: Sequence[str]) -> Boundaries:
        def flags(test) -> np.ndarray:  # per token id; the extra last entry is for the separator (-1)
            return np.array([bool(test(t)) for t in token_texts] + [False], dtype=bool)

        has_nl = flags(lambda t: "\n" in t)
        starts_nl, ends_nl = flags(lambda t: t.startswith("\n")), flags(lambda t: t.endswith("\n"))
        starts_w, ends_w = flags(lambda t: _WORD_CHAR.match(t[:1])), flags(lambda t: _WORD_CHAR.match(t[-1:]))
        prev = np.concatenate([[SEPARATOR], ids[:-1]])
        nxt = np.concatenate([ids[1:], [SEPARATOR]])
        continues = starts_nl[ids] & ends_nl[prev]
        return cls(breaks=(has_nl[ids] & ~continues).astype(np.int8),
                   left_ok=~(starts_w[ids] & ends_w[prev]), right_ok=~(ends_w[ids] & starts_w[nxt]))


def count_ngrams(ids: np.ndarray, max_len: int, min_count: int, bounds: Boundaries | None = None,
                 max_inner_breaks: int = 0, closed_only: bool = True, progress=None) -> NgramCounts:
    """The closed n-grams of lengths 2..max_len in `ids` that occur at least `min_count` times (overlaps
    counted). Closed: no one-token-longer n-gram has the same count (else every occurrence lies inside that
    longer one, which saves more).

    With `bounds`, windows with more than `max_inner_breaks` line-break runs strictly inside them (not in
    their first or last token) are not counted: a break at a phrase's edge is fine, one in its middle joins
    lines. Such windows only grow worse when extended, so dropping them keeps the prefix/suffix pruning
    exact. Windows that start or end inside a word (at their first occurrence) are counted, since they
    extend to whole words, but neither returned nor allowed to make a shorter n-gram unclosed.
    `progress(n, kept)` is called after each length with the number of n-grams found.
    """
    n_total = ids.shape[0]
    lengths, positions, counts = [], [], []
    closed: list[np.ndarray] = []  # per level: False where a one-token-longer n-gram has the same count
    prev_group = np.full(n_total, -1, dtype=np.int64)  # position -> index of its frequent (n-1)-gram
    valid = ids != SEPARATOR  # alive[i]: the window of the current length starting at i is frequent
    hashes = (ids + 1).astype(np.uint64)
    cum_breaks = None if bounds is None else np.concatenate([[0], np.cumsum(bounds.breaks, dtype=np.int64)])
    phrase_ok: list[np.ndarray] = []  # per level: starts and ends at word boundaries
    alive = valid.copy()
    for n in range(2, max_len + 1):
        if n > n_total:
            break
        # window [i, i+n) is a candidate when windows [i, i+n-1) and [i+1, i+n) are both frequent
        cand = np.zeros(n_total, dtype=bool)
        cand[:-1] = alive[:-1] & alive[1:]
        idx = np.flatnonzero(cand)
        if cum_breaks is not None and n > 2:
            idx = idx[cum_breaks[idx + n - 1] - cum_breaks[idx + 1] <= max_inner_breaks]
        if idx.size == 0:
            break
        hashes = hashes * _HASH_MUL  # extend every window by its next token; wraps mod 2**64
        hashes[: n_total - n + 1] += (ids[n - 1:] + 1).astype(np.uint64)
        uniq, first, inverse, cnt = np.unique(hashes[idx], return_index=True, return_inverse=True,
                                              return_counts=True)
        frequent = cnt >= min_count
        alive = np.zeros(n_total, dtype=bool)
        alive[idx[frequent[inverse]]] = True
        keep = np.flatnonzero(frequent)
        rep = idx[first[keep]]
        level_counts = cnt[keep].astype(np.int64)
        level_valid = (np.ones(keep.size, dtype=bool) if bounds is None
                       else bounds.left_ok[rep] & bounds.right_ok[rep + n - 1])
        if n > 2:
            # an n-gram with the count of its (n-1)-gram prefix/suffix covers every occurrence of it
            prev_counts, prev_closed = counts[-1], closed[-1]
            for sub in (prev_group[rep], prev_group[rep + 1]):
                covers = (prev_counts[sub] == level_counts) & level_valid
                prev_closed[sub[covers]] = False
        lengths.append(np.full(keep.size, n, dtype=np.int64))
        positions.append(rep)
        counts.append(level_counts)
        closed.append(np.ones(keep.size, dtype=bool))
        phrase_ok.append(level_valid)
        prev_group = np.full(n_total, -1, dtype=np.int64)
        group_of_unique = np.full(uniq.size, -1, dtype=np.int64)
        group_of_unique[keep] = np.arange(keep.size)
        prev_group[idx] = group_of_unique[inverse]
        if progress is not None:
            progress(n, int(keep.size))
        if keep.size == 0:
            break
    if not lengths:
        empty = np.zeros(0, dtype=np.int64)
        return NgramCounts(ids, empty, empty, empty)
    mask = np.concatenate(phrase_ok) & (np.concatenate(closed) if closed_only else True)
    return NgramCounts(ids, np.concatenate(lengths)[mask], np.concatenate(positions)[mask],
                       np.concatenate(counts)[mask])


def looks_like_code(texts: Sequence[str], sample_lines: int = 20000) -> bool:
    """True when at least CODE_SHARE of the (first `sample_lines`) non-empty lines look like program text."""
    seen = code = 0
    for text in texts:
        for line in text.splitlines():
            if not line.strip():
                continue
            seen += 1
            code += bool(_CODE_LINE.search(line))
            if seen >= sample_lines:
                return code >= CODE_SHARE * seen
    return seen > 0 and code >= CODE_SHARE * seen


class OccurrenceIndex:
    """Finds every position of a token sequence in the laid-out corpus: positions are bucketed by their
    token id once (one argsort), then a sequence's first-token bucket is narrowed token by token."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids
        valid = np.flatnonzero(ids != SEPARATOR)
        self.order = valid[np.argsort(ids[valid], kind="stable")]  # positions sorted by token id
        self.bounds = np.searchsorted(ids[self.order], np.arange(int(ids.max(initial=0)) + 2))
        self.sizes = np.diff(self.bounds)  # occurrences of each token id

    def find(self, seq: Sequence[int]) -> np.ndarray:
        """Sorted start positions of `seq` (overlapping occurrences included), anchored on its rarest token."""
        seq = np.asarray(seq, dtype=np.int64)
        if seq.min() < 0 or seq.max() + 1 >= self.bounds.size:
            return np.zeros(0, dtype=np.int64)
        anchor = int(np.argmin(self.sizes[seq]))
        token = seq[anchor]
        pos = self.order[self.bounds[token]:self.bounds[token + 1]] - anchor
        pos = pos[(pos >= 0) & (pos + seq.size <= self.ids.size)]
        for j in range(seq.size):
            if j != anchor:
                pos = pos[self.ids[pos + j] == seq[j]]
        return pos
