"""datatrove's Gopher repetition filter with its n-gram statistics computed in bulk.

After the word split, the filter's cost is three pure-Python loops per document: the
2/3/4-gram strings and a Counter of them (`get_n_grams`, `find_top_duplicate`), and, for
n = 5..10, a scan that joins every n-gram (`find_all_duplicate`). `FastGopherRepetition`
gives the same numbers, hence the same verdicts, by cheaper means:

* top n-gram: word ids from one dict pass, each n-gram an integer key, counts with
  `numpy.unique`; the winner is the most frequent n-gram that occurs first, as
  `Counter.most_common(1)` picks it, and its characters (its words plus n-1 spaces) times its count.
  Keys equal exactly when the space-joined strings are equal, because no word contains a
  space (a text with such a word takes datatrove's functions);
* duplicate n-grams: the keys are datatrove's own (the words joined with no separator),
  told apart by a hash of their characters (colliding keys compared as strings). A
  document whose keys are all distinct has no duplicate characters; in the others,
  datatrove's sequential scan visits only the keys that occur more than once (the
  others can neither count nor change what is skipped).

tests/test_fineweb_filters.py checks the numbers against datatrove's functions on real
texts and on built cases (ties, words with spaces, empty and short documents).
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np
from datatrove.pipeline.filters.gopher_repetition_filter import (
    GopherRepetitionFilter,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)
from datatrove.utils.text import split_into_words

_KEY_BITS = 62  # n word ids packed into one int64 while vocabulary ** n < 2 ** 62


def top_duplicate_chars(words: list[str], n: int, ids: np.ndarray | None = None,
                        vocabulary: int | None = None, offsets: list[int] | None = None) -> int | None:
    """`find_top_duplicate(get_n_grams(words, n))`, or None when there is no n-gram."""
    m = len(words) - n + 1
    if m <= 0:
        return None
    if ids is None:
        ids, vocabulary = word_ids(words)
        offsets = join_words(words)[1]
    if vocabulary ** n >= 2 ** _KEY_BITS:
        return find_top_duplicate(get_n_grams(words, n))
    keys = ids[:m].copy()
    for j in range(1, n):
        keys *= vocabulary
        keys += ids[j:j + m]
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    best = counts.max()
    start = int(first[counts == best].min())   # Counter keeps first-seen order; max() takes the first
    return (offsets[start + n] - offsets[start] + n - 1) * int(best)


def all_duplicate_chars(words: list[str], n: int, joined: str | None = None,
                        offsets: list[int] | None = None, hashes: "NgramHashes | None" = None) -> int:
    """`find_all_duplicate(words, n)`.

    datatrove's scan walks the n-gram keys (the words joined with no separator) in order:
    a key seen before counts its characters and skips the next n - 1 n-grams; any other
    is remembered. Only keys that occur more than once can ever count, or change what is
    skipped, so the scan here visits only those: the keys are told apart by a hash of
    their characters, and the keys that share a hash are compared as strings (a hash
    collision between different keys falls back to the full scan). Keys all distinct
    (more than half of the (document, n) pairs of a crawl): nothing to count."""
    m = len(words) - n + 1
    if m <= 0:
        return 0
    if joined is None or offsets is None:
        joined, offsets = join_words(words)
    if hashes is None:
        hashes = NgramHashes(joined, offsets)
    group = hashes.groups(n, m)
    if group is None:
        return 0
    positions = np.flatnonzero(np.bincount(group)[group] > 1).tolist()   # ascending
    groups = group[positions].tolist()
    first_key: dict[int, str] = {}
    for p, g in zip(positions, groups):
        key = joined[offsets[p]:offsets[p + n]]
        if first_key.setdefault(g, key) != key:
            return _scan_all_keys(joined, offsets, n, m)   # two different keys share a hash
    seen: set[int] = set()
    repeated, next_visited = 0, 0
    for p, g in zip(positions, groups):
        if p < next_visited:
            continue   # skipped by the scan after an earlier repeat
        if g in seen:
            repeated += offsets[p + n] - offsets[p]
            next_visited = p + n
        else:
            seen.add(g)
    return repeated


def _scan_all_keys(joined: str, offsets: list[int], n: int, m: int) -> int:
    """datatrove's sequential scan, over keys sliced from the joined words instead of a join per step."""
    keys = [joined[a:b] for a, b in zip(offsets[:m], offsets[n:])]
    unique: set[str] = set()
    repeated, idx = 0, 0
    while idx < m:
        key = keys[idx]
        if key in unique:
            repeated += len(key)
            idx += n
        else:
            unique.add(key)
            idx += 1
    return repeated


class NgramHashes:
    """A polynomial hash (mod 2**64) of every substring of the joined words between two word
    starts, from prefix sums: equal strings always get equal hashes, wherever they are."""

    _BASE = 0x9E3779B97F4A7C15   # odd, so it has an inverse mod 2**64
    _INVERSE = pow(_BASE, -1, 2 ** 64)

    def __init__(self, joined: str, offsets: list[int]):
        codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        size = len(codes)
        self._powers = np.full(size + 1, self._BASE, dtype=np.uint64)
        self._powers[0] = 1
        np.cumprod(self._powers, out=self._powers)   # BASE ** j, wrapping at 2**64
        inverse = np.full(size, self._INVERSE, dtype=np.uint64)
        inverse[0] = 1
        np.cumprod(inverse, out=inverse)               # BASE ** -j
        self._prefix = np.zeros(size + 1, dtype=np.uint64)
        np.cumsum(codes * inverse, out=self._prefix[1:])
        self._offsets = np.asarray(offsets, dtype=np.int64)

    def groups(self, n: int, m: int) -> np.ndarray | None:
        """Each n-gram's group (n-grams of a group share a hash); None when all hashes differ."""
        starts, ends = self._offsets[:m], self._offsets[n:n + m]
        # sum of code[j] * BASE ** (end - 1 - j) over the n-gram's characters: independent of where it is
        hashes = (self._prefix[ends] - self._prefix[starts]) * self._powers[np.maximum(ends - 1, 0)]
        order = np.argsort(hashes, kind="stable")
        ranked = hashes[order]
        new = np.empty(m, dtype=bool)
        new[0] = True
        np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
        if new.all():
            return None
        group = np.empty(m, dtype=np.int64)
        group[order] = np.cumsum(new) - 1
        return group


def word_ids(words: list[str]) -> tuple[np.ndarray, int]:
    """Each word's id (in order of first appearance) and the number of distinct words."""
    vocabulary: dict[str, int] = {}
    ids = np.fromiter((vocabulary.setdefault(w, len(vocabulary)) for w in words), dtype=np.int64, count=len(words))
    return ids, max(len(vocabulary), 1)


def join_words(words: list[str]) -> tuple[str, list[int]]:
    """The words joined with no separator, and where each starts in it (plus the end)."""
    return "".join(words), [0, *accumulate(map(len, words))]


class FastGopherRepetition(GopherRepetitionFilter):
    """GopherRepetitionFilter.filter (datatrove 0.10) with the n-gram statistics above."""

    def filter(self, doc):
        text = doc.text
        if not text:
            return False, "empty"

        paragraphs = self.paragraph_exp.split(text.strip())
        paragraphs_duplicates, char_duplicates = find_duplicates(paragraphs)
        if self.dup_para_frac and paragraphs_duplicates / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and char_duplicates / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"

        lines = self._line_splitter.split(text)
        line_duplicates, char_duplicates = find_duplicates(lines)
        if self.dup_line_frac and line_duplicates / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and char_duplicates / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"

        words = split_into_words(text, self.language)
        joined, offsets = join_words(words)
        spaced = " " in joined                  # some word holds a space: keys by words would differ
        ids, vocabulary = word_ids(words)
        for n, n_frac in self.top_n_grams:
            if spaced:
                n_grams = get_n_grams(words, n)
                top_char_length = find_top_duplicate(n_grams) if n_grams else None
            else:
                top_char_length = top_duplicate_chars(words, n, ids, vocabulary, offsets)
            if top_char_length is None:
                continue
            if top_char_length / len(text) > n_frac:
                return False, f"top_{n}_gram"

        hashes = NgramHashes(joined, offsets) if self.dup_n_grams else None
        for n, n_frac in self.dup_n_grams:
            n_duplicates_char = all_duplicate_chars(words, n, joined, offsets, hashes)
            if n_duplicates_char / len(text) > n_frac:
                return False, f"duplicated_{n}_n_grams"

        return True
