"""MinHash signatures of FineWeb-normalised word 5-grams, vectorised with numpy.

Normalisation is datatrove's `simplify_text` (FineWeb's: lowercase, numbers -> 0,
punctuation -> space, whitespace collapsed, diacritics removed), then the text's words:
for most languages a split on whitespace, every Unicode space class included (what
`simplify_text(text).split()` gives); for the languages whose FineWeb-2 word splitter cuts
inside space-free text (Chinese, Japanese, Korean, Thai, ...) that splitter, run on the
simplified text as datatrove's `MinhashDedupSignature(language=...)` runs it
(`shammie.filters.words.dedup_splitter`). FineWeb splits English with datatrove's spaCy
tokenizer instead of whitespace; after `simplify_text` has removed punctuation the two
mostly agree, and the spaCy tokenizer is ~85% of datatrove's signature cost, so we do not
use it for the space-separated languages. Exact dedup, MinHash dedup and decontamination
all take their words from `normalise_words`.

Why hand-written instead of datatrove's `MinhashDedupSignature.get_signature`:
datatrove hashes every 5-gram string in a Python loop and keeps 64-bit values;
here each *word* is hashed once with xxh3 (a C call per word through `map`), the
5-gram hash is a numpy combination of 5 consecutive word hashes, and the 112
permutations are a vectorised multiply-shift over all shingles at once. That is
what makes >= 1,000 docs/s per core possible (see docs/benchmarks/dedup.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import re
import unicodedata

import numpy as np
import regex
import xxhash

from datatrove.utils.text import PUNCTUATION, PUNCTUATION_TRANS

from shammie.filters.words import dedup_word_settings

# simplify_text's steps, re-done faster with the same tables: `re`'s \d on str is
# Unicode Nd like datatrove's `regex` \p{Nd}; whitespace collapsing is implied by
# the final split; diacritics go with one regex after NFD instead of a Python
# loop over characters. tests/test_dedup.py checks the words equal
# `simplify_text(text).split()`, for every character `str.isspace` calls a space.
_NUMBERS = re.compile(r"\d+([.,\u060c\u066b\u2396\u2397\u2398]\d+)?")
_NONSPACING_MARKS = regex.compile(r"\p{Mn}+")
# Every character Python's str.split (and datatrove's `\s+` collapse) treats as a space, but
# bytes.split does not: U+001C..U+001F, U+0085, U+00A0 (no-break space), U+1680, U+2000..U+200A,
# U+2028/9, U+202F, U+205F, U+3000 (ideographic space). They become ASCII spaces before the
# text is encoded, so the split of the UTF-8 bytes is the split of the string.
# (No space character lies above U+3000; tests/test_dedup.py checks every code point.)
_OTHER_SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in " \t\n\r\x0b\x0c")
_ASCII_TRANS = {**PUNCTUATION_TRANS, **{ord(c): " " for c in _OTHER_SPACES if ord(c) < 128}}
# str.translate is fast on ASCII strings only; on others one regex pass is ~3x faster.
_PUNCTUATION_RUN = re.compile("[" + "".join(re.escape(c) for c in PUNCTUATION + _OTHER_SPACES) + "]+")
_WHITESPACE_RUN = re.compile(r"\s+")

# Version of the word normalisation, recorded with every output made from it (dedup, exact dedup,
# decontamination, the dedup index): 2 splits on every Unicode space and with the language's
# word splitter; 1 (before) split the UTF-8 text on ASCII spaces only.
NORMALISATION = 2

_U64 = np.uint64
# 64-bit odd constants (xxhash/splitmix primes) used to combine word hashes.
_NGRAM_MULTIPLIERS = np.array([
    0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
    0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD,
    0xC4CEB9FE1A85EC53, 0x94D049BB133111EB,
], dtype=_U64)


@dataclass(frozen=True)
class MinhashParams:
    """FineWeb's setting: 5-grams, 112 hashes as 14 bands of 8 (S-curve midpoint ~0.72)."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        """Jaccard at which a pair is found with probability ~1/2: (1/b)^(1/r)."""
        return (1.0 / self.bands) ** (1.0 / self.rows)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int = 112, ngram: int = 5, seed: int = 1) -> "MinhashParams":
        """Bands and rows that minimise false positives + negatives at `threshold` (datasketch's optimiser)."""
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        return cls(ngram=ngram, bands=lsh.b, rows=lsh.r, seed=seed)


def _simplified(text: str) -> str:
    """simplify_text's lowercase, numbers, punctuation and diacritics steps; every space character
    left as an ASCII space or newline/tab (runs not collapsed)."""
    text = _NUMBERS.sub("0", text.lower())
    if text.isascii():
        return text.translate(_ASCII_TRANS)
    text = _PUNCTUATION_RUN.sub(" ", text)
    return _NONSPACING_MARKS.sub("", unicodedata.normalize("NFD", text))


def simplify(text: str) -> str:
    """Exactly datatrove's `simplify_text(text)` (its default settings): the string a language's word
    splitter gets, as in datatrove's MinHash signatures and n-gram decontamination."""
    text = _NUMBERS.sub("0", text.lower())
    text = text.translate(PUNCTUATION_TRANS) if text.isascii() else _PUNCTUATION_RUN.sub(" ", text)
    text = _WHITESPACE_RUN.sub(" ", text.strip())
    if not text.isascii():
        text = _NONSPACING_MARKS.sub("", unicodedata.normalize("NFD", text))
    return text.strip()


def normalise_words(text: str, splitter: Callable[[str], list[str]] | None = None) -> list[bytes]:
    """FineWeb's `simplify_text` normalisation, then the words (UTF-8): split on every Unicode space
    without `splitter`, else `splitter(simplify(text))` (a language's FineWeb-2 word splitter)."""
    if splitter is None:
        return _simplified(text).encode("utf-8").split()
    return [w.encode("utf-8") for w in splitter(simplify(text)) if w and not w.isspace()]


def word_settings() -> dict:
    """What the words of a dedup or decontamination output depend on: the normalisation version
    and each language whose words come from its word tokenizer (its datatrove key)."""
    return {"normalisation": NORMALISATION, "split_by_tokenizer": dedup_word_settings()}


def _mix64(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of a combined hash (wrapping uint64 arithmetic)."""
    h = h ^ (h >> _U64(30))
    h = h * _U64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U64(27))
    h = h * _U64(0x94D049BB133111EB)
    return h ^ (h >> _U64(31))


def shingle_hashes(words: list[bytes], ngram: int = 5) -> np.ndarray:
    """64-bit hashes of the word n-grams, repeats included (they cannot change a minimum);
    empty when there are fewer than n words."""
    n = len(words) - ngram + 1
    if n <= 0:
        return np.empty(0, dtype=_U64)
    w = np.fromiter(map(xxhash.xxh3_64_intdigest, words), dtype=_U64, count=len(words))
    with np.errstate(over="ignore"):
        h = w[0:n] * _NGRAM_MULTIPLIERS[0]
        for k in range(1, ngram):
            h = (h ^ (h >> _U64(29))) + w[k:k + n] * _NGRAM_MULTIPLIERS[k % len(_NGRAM_MULTIPLIERS)]
        return _mix64(h)


class MinHasher:
    """`num_perm` min-wise hashes by multiply-shift ((a*x + b) >> 32, a odd, 64-bit wrapping).

    Shingle hashes are already avalanche-mixed, so a cheap 2-universal family
    per permutation is enough; a test checks the Jaccard estimate is unbiased."""

    EMPTY = np.iinfo(np.uint32).max

    def __init__(self, params: MinhashParams = MinhashParams(), chunk: int = 4096):
        self.params = params
        rng = np.random.RandomState(params.seed)
        hi = rng.randint(0, 2**32, size=(2, params.num_perm), dtype=np.uint64)
        lo = rng.randint(0, 2**32, size=(2, params.num_perm), dtype=np.uint64)
        ab = (hi << _U64(32)) | lo
        self.a_col = (ab[0] | _U64(1)).reshape(-1, 1)
        self.b_col = ab[1].reshape(-1, 1)
        self.chunk = chunk

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """uint32[num_perm]; all EMPTY when there are no shingles."""
        if shingles.size == 0:
            return np.full(self.params.num_perm, self.EMPTY, dtype=np.uint32)
        best = None
        # (perm, shingle) layout and in-place ops: one temporary, contiguous rows to
        # reduce. The shift commutes with min (it is monotonic), so it runs on 112 values.
        for start in range(0, shingles.size, self.chunk):
            x = self.a_col * shingles[start:start + self.chunk]
            x += self.b_col
            m = x.min(axis=1)
            best = m if best is None else np.minimum(best, m)
        return (best >> _U64(32)).astype(np.uint32)

    def text_signature(self, text: str, splitter: Callable[[str], list[str]] | None = None) -> tuple[np.ndarray, bool]:
        """(signature, has_shingles) of one document's text (`splitter`: its language's, see normalise_words)."""
        sh = shingle_hashes(normalise_words(text, splitter), self.params.ngram)
        return self.signature(sh), bool(sh.size)


def band_keys(signatures: np.ndarray, params: MinhashParams, salt: np.ndarray | None = None) -> np.ndarray:
    """uint64[bands, n]: one 64-bit key per band of `rows` values (equal band <=> equal key,
    up to a 2^-64 collision chance). `salt` (uint64[n]) separates groups that must never
    match, e.g. one snapshot from another."""
    n = signatures.shape[0]
    sig = signatures.astype(_U64)
    keys = np.empty((params.bands, n), dtype=_U64)
    with np.errstate(over="ignore"):
        for b in range(params.bands):
            h = np.full(n, _U64(b + 1) * _NGRAM_MULTIPLIERS[0], dtype=_U64)
            if salt is not None:
                h = h ^ salt
            for r in range(params.rows):
                col = sig[:, b * params.rows + r]
                h = _mix64(h ^ (col * _NGRAM_MULTIPLIERS[(r + 1) % len(_NGRAM_MULTIPLIERS)]))
            keys[b] = h
    return keys


def string_hash(value: str) -> int:
    return xxhash.xxh3_64_intdigest(value.encode("utf-8"))


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))
