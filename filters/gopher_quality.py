"""datatrove's Gopher quality filter with its per-word tests looked up instead of recomputed.

After the word split (shared with the other filters), `GopherQualityFilter.filter` spends
its time in two generator loops over every character of every word: "has a character
outside datatrove's PUNCTUATION_SET" and "has an alphabetic character". Both depend on
the word alone, and web text repeats its words, so `FastGopherQuality` keeps each word's
two answers (per worker process) and counts with C-level loops; everything else is
datatrove's code, in datatrove's order, so the verdicts are the same.
tests/test_fineweb_filters.py compares them with datatrove's on real and built texts.
"""

from __future__ import annotations

from itertools import compress

import numpy as np
from datatrove.pipeline.filters import GopherQualityFilter
from datatrove.utils.text import PUNCTUATION_SET, split_into_words

_MAX_WORDS = 500_000  # remembered words per process (~60 MB at most), then forgotten and relearnt


class FastGopherQuality(GopherQualityFilter):
    """GopherQualityFilter.filter (datatrove 0.10) with memoised per-word tests."""

    _not_symbol: dict[str, bool] = {}  # word -> it has a character outside PUNCTUATION_SET
    _has_alpha: dict[str, bool] = {}   # word -> it has an alphabetic character

    @classmethod
    def _learn(cls, words: list[str]) -> None:
        not_symbol, has_alpha = cls._not_symbol, cls._has_alpha
        new = set(words).difference(not_symbol)
        if not new:
            return
        if len(not_symbol) + len(new) > _MAX_WORDS:
            not_symbol.clear()
            has_alpha.clear()
            new = set(words)
        for w in new:
            not_symbol[w] = any(ch not in PUNCTUATION_SET for ch in w)
            has_alpha[w] = any(c.isalpha() for c in w)

    def filter(self, doc):
        text = doc.text
        words = split_into_words(text, self.language)
        n_words = len(words)
        self._learn(words)

        non_symbol_words = list(compress(words, map(self._not_symbol.__getitem__, words)))
        n_non_symbol_words_words = len(non_symbol_words)

        if self.min_doc_words and n_non_symbol_words_words < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and n_non_symbol_words_words > self.max_doc_words:
            return False, "gopher_long_doc"

        avg_n_words = np.mean([len(w) for w in non_symbol_words])
        if self.min_avg_word_length and avg_n_words < self.min_avg_word_length:
            return False, "gopher_below_avg_threshold"
        if self.max_avg_word_length and avg_n_words > self.max_avg_word_length:
            return False, "gopher_above_avg_threshold"

        if self.max_symbol_word_ratio and text.count("#") / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_hashes"
        if self.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_ellipsis"

        lines = text.splitlines()
        if (
            self.max_bullet_lines_ratio
            and sum(s.lstrip().startswith("•") or s.lstrip().startswith("-") for s in lines) / len(lines)
            > self.max_bullet_lines_ratio
        ):
            return False, "gopher_too_many_bullets"
        if (
            self.max_ellipsis_lines_ratio
            and sum(s.rstrip().endswith("...") or s.rstrip().endswith("…") for s in lines) / len(lines)
            > self.max_ellipsis_lines_ratio
        ):
            return False, "gopher_too_many_end_ellipsis"

        if (
            self.max_non_alpha_words_ratio
            and sum(map(self._has_alpha.__getitem__, words)) / n_words < self.max_non_alpha_words_ratio
        ):
            return False, "gopher_below_alpha_threshold"

        if self.min_stop_words and len(self.stop_words.intersection(set(words))) < self.min_stop_words:
            return False, "gopher_enough_stop_words"

        return True


def count_non_symbol_words(words: list[str]) -> int:
    """How many of `words` Gopher quality counts against `min_doc_words`: those with a character
    outside datatrove's PUNCTUATION_SET (the filter's own test, from the same per-worker memo)."""
    FastGopherQuality._learn(words)
    return sum(map(FastGopherQuality._not_symbol.__getitem__, words))
