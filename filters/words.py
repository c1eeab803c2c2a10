"""Word splitting for the Gopher and FineWeb filters: exactly spaCy's words, without spaCy's cost per text.

datatrove's filters split every document into words with a blank spaCy pipeline
(`SpaCyTokenizer.word_tokenize`: tokenize, take each token's text, drop the ones that are
empty once stripped). spaCy's tokenizer cuts the text at spaces and splits each
space-free chunk by its prefix/suffix/infix rules and exceptions on its own; only one
later pass looks across chunks: special cases that contain punctuation (`''`, `'s`,
emoticons like `:)`) are found with a phrase matcher over the whole token sequence, and
a candidate that straddles a space (the last token of one chunk and the first of the
next) can shadow a real one. So the words of a text are the words of its chunks, except
at a boundary where such a straddling candidate exists.

`ChunkCachedWordTokenizer` keeps the words of the chunks it has seen (web text repeats
its chunks), sends a text's unseen chunks to spaCy in one call (separated by a newline
token, across which nothing can match), and answers from the cache, except around a
boundary of the text that could start a straddling special case: spaCy splits a stretch
of text around each such boundary (once the whole text: 5% of crawled pages have one, and
they were a third of the split's time). The output is spaCy's, word for word:
tests/test_words.py checks it on real texts and benchmarks/word_split.py measures the speed.

Hand-written because neither spaCy nor datatrove keeps tokenizations across texts (spaCy's
own cache still builds a Doc and a Python object per token for every text).
"""

from __future__ import annotations

import sys
from itertools import chain, islice
from operator import itemgetter
from typing import Any

from shammie.filters.language_settings import available_languages, load_language_settings, settings_for

DEFAULT_CACHE_CHUNKS = 500_000  # ~100 MB of cached chunks and their words at most
_SEPARATOR = " \n\n "  # a whitespace token between learned chunks: no special case spans it
_BREAKS_SPACY = "IS_ALPHA"  # datatrove removes it before splitting (spaCy's tokenizer raises on it)
_WORDS = itemgetter(0)  # a cache entry's words (see __init__)
_SPACE = 32
# A chunk's effect on the sentence count (`_sentence_steps`): (new sentences, period seen after it)
# when it follows no sentence-final character, then the same when it follows one. A chunk that is one
# token, neither punctuation nor sentence-final (a plain word or number), starts a sentence after one.
_ONE_PLAIN_TOKEN = (0, False, 1, False)


class ChunkCachedWordTokenizer:
    """Wraps a datatrove `SpaCyTokenizer`; `word_tokenize(text)` returns exactly its words."""

    def __init__(self, inner, max_chunks: int = DEFAULT_CACHE_CHUNKS):
        from spacy.tokenizer import Tokenizer
        from spacy.vocab import Vocab

        self._inner = inner
        self._max = max_chunks
        # chunk -> [its words, its first and last few tokens before special cases (None until needed),
        #           its effect on a sentence count (None until needed)]; oldest first. A plain dict:
        #           a set of chunks is compared with it in C (`set.difference` needs an exact dict).
        self._cache: dict[str, list] = {}
        spacy_tokenizer = inner.tokenizer.tokenizer
        # Copies of spaCy's tokenizer over a vocabulary without lexical attribute getters: a
        # tokenizer makes a lexeme for every new string, and computing its attributes (shape,
        # like_num, like_url, ...) was a third of the split's cost; no split depends on them.
        # The words pass also skips the pipeline's sentencizer, which datatrove's call runs.
        self._vocab = Vocab()
        affixes = dict(prefix_search=spacy_tokenizer.prefix_search, suffix_search=spacy_tokenizer.suffix_search,
                       infix_finditer=spacy_tokenizer.infix_finditer, token_match=spacy_tokenizer.token_match,
                       url_match=spacy_tokenizer.url_match, faster_heuristics=spacy_tokenizer.faster_heuristics)
        self._with_rules = Tokenizer(self._vocab, rules=spacy_tokenizer.rules, **affixes)
        # The same affix rules without special cases: the token sequences the phrase matcher sees.
        self._bare = Tokenizer(self._vocab, rules={}, **affixes)
        self._straddles = _straddling_pairs(spacy_tokenizer, self._bare)
        self._rules = set(spacy_tokenizer.rules)
        self._edge = max((len(k) for k in self._straddles), default=1)
        # the most tokens a straddling candidate covers (first part + second part)
        self._reach = max((len(k) + len(v) for k, seconds in self._straddles.items() for v in seconds), default=1)
        self._last_tokens = {k[-1] for k in self._straddles}
        self._bridges = _bridge_table(self._straddles)
        self.hits = self.misses = self.whole_texts = self.straddled_texts = 0
        self._sentence_rule = None  # (punct_chars, is_punct) once read from the pipeline; False if none

    @property
    def language(self) -> str:
        return self._inner.language

    def word_tokenize(self, text: str) -> list[str]:
        if _BREAKS_SPACY in text:  # datatrove's call rewrites such a text before splitting it
            self.whole_texts += 1
            return self._inner.word_tokenize(text)
        # the loops over a text's chunks are C-level (filter, set, map, chain, numpy): with most
        # chunks cached, this bookkeeping is what a split costs
        pieces = text.split(" ")
        chunks = list(filter(None, pieces))
        entries = self._entries(chunks)
        boundaries = self._straddled_boundaries(text, chunks, entries)
        if boundaries:
            self.straddled_texts += 1
            return self._words_around(text, pieces, entries, boundaries)
        return list(chain.from_iterable(map(_WORDS, entries)))

    def _entries(self, chunks: list[str]) -> list[list]:
        """The cache entries of the chunks, learning the unseen ones (the set operations run in C)."""
        cache = self._cache
        unseen = set(chunks).difference(cache)
        if unseen:
            self._learn(sorted(unseen))   # sorted: the cache's order (its eviction) is the same every run
        self.misses += len(unseen)
        self.hits += len(chunks) - len(unseen)
        entries = list(map(cache.__getitem__, chunks))
        if len(cache) > self._max:  # drop the oldest quarter at once (a dict pops its first keys slowly)
            self._cache = dict(islice(cache.items(), len(cache) - self._max * 3 // 4, None))
        return entries

    def _straddled_boundaries(self, text: str, chunks: list[str], entries: list[list]) -> list[int]:
        """The spaces (i: between chunks i and i + 1) that a special case could straddle. First
        by characters, for all boundaries at once: a candidate's first part ends the left chunk
        and its second part starts the right one (or the right chunk starts it), so the last
        character before the spaces and the first one after must be a pair some candidate has
        there (`_bridge_table`); that leaves about two boundaries of a page's 700. Then by the
        two chunks' bare tokens."""
        suspects = self._bridges.boundaries(text, chunks)
        if not suspects:
            return []
        missing = {chunks[j]: entries[j] for i in suspects for j in (i, i + 1) if entries[j][1] is None}
        if missing:
            self._learn_edges(list(missing), list(missing.values()))
        last_tokens = self._last_tokens
        found = []
        for i in suspects:
            tail, head = entries[i][2], entries[i + 1][1]
            if not tail or tail[-1] not in last_tokens:
                continue
            for j in range(1, min(len(tail), self._edge) + 1):
                seconds = self._straddles.get(tail[-j:])
                if seconds and any(head[:len(s)] == s or s[:len(head)] == head for s in seconds):
                    found.append(i)
                    break
        return found

    def _words_around(self, text: str, pieces: list[str], entries: list[list], boundaries: list[int]) -> list[str]:
        """The text's words when special cases may straddle the given spaces: spaCy splits the
        stretch of text around each such space, the cache gives the other chunks' words.

        A straddling candidate starts in the chunk left of a flagged space (every candidate
        that crosses a space is flagged at the first space it crosses) and covers at most
        `_reach` tokens, so at most `_reach` chunks; what it can shadow overlaps it. A stretch
        of `_reach` chunks on each side of the space holds all of that, and the chunks
        outside every stretch split as they do alone. tests/test_words.py compares the words
        with spaCy's on real texts and on long built ones with cases in their middle.
        `pieces` is `text.split(" ")`: the chunks and where they start."""
        starts, ends, position = [], [], 0
        for piece in pieces:
            if piece:
                starts.append(position)
                ends.append(position + len(piece))
            position += len(piece) + 1
        last, reach = len(starts) - 1, self._reach
        stretches: list[list[int]] = []
        for i in boundaries:
            first, end = max(0, i - reach), min(last, i + 1 + reach)
            if stretches and first <= stretches[-1][1] + 1:
                stretches[-1][1] = end
            else:
                stretches.append([first, end])
        split = self._tokens_per_chunk([text[starts[a]:ends[b]] for a, b in stretches], self._with_rules, strip=True)
        words: list[str] = []
        done = 0
        for (a, b), stretch_words in zip(stretches, split):
            words.extend(chain.from_iterable(map(_WORDS, entries[done:a])))
            words.extend(stretch_words)
            done = b + 1
        words.extend(chain.from_iterable(map(_WORDS, entries[done:])))
        return words

    def _learn(self, chunks: list[str]) -> None:
        """The words (spaCy, special cases applied) of each unseen chunk; its bare affix tokens
        (first and last few) are learnt later, only if a boundary needs them.

        A chunk of ASCII letters only, or digits only, that is no special case is one token
        (no prefix, suffix or infix rule can apply to it) and needs no spaCy call: those are
        most of the unseen chunks of real text. The others go to spaCy in one call."""
        rules, cache = self._rules, self._cache
        hard = []
        for c in chunks:
            if c.isascii() and (c.isalpha() or c.isdigit()) and c not in rules:
                cache[c] = [(c,), (c,), (c,), _ONE_PLAIN_TOKEN]
            else:
                hard.append(c)
                cache[c] = [None, None, None, None]
        if not hard:
            return
        for c, w in zip(hard, self._tokens_per_chunk(hard, self._with_rules, strip=True)):
            cache[c][0] = tuple(w)

    def _learn_edges(self, chunks: list[str], entries: list[list]) -> None:
        edge = self._edge
        for entry, bare in zip(entries, self._tokens_per_chunk(chunks, self._bare, strip=False)):
            entry[1], entry[2] = tuple(bare[:edge]), tuple(bare[-edge:])

    def _tokens_per_chunk(self, chunks: list[str], tokenizer, strip: bool) -> list[list[str]]:
        """The tokens of each chunk, from one tokenizer call on the chunks joined by separators.

        Tokens are read as (start, length) arrays and sliced from the joined string: no
        spaCy Token object per token (those were another third of the cost)."""
        import numpy as np
        from spacy.attrs import IDX, LENGTH

        joined = _SEPARATOR.join(chunks)
        lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
        starts = np.zeros(len(chunks), dtype=np.int64)
        np.cumsum(lengths[:-1] + len(_SEPARATOR), out=starts[1:])
        with self._vocab.memory_zone():
            spans = tokenizer(joined).to_array([IDX, LENGTH]).astype(np.int64, copy=False)
        if not len(spans):
            return [[] for _ in chunks]
        begin, size = spans[:, 0], spans[:, 1]
        owner = np.searchsorted(starts, begin, side="right") - 1
        inside = begin < starts[owner] + lengths[owner]   # the rest are the separators' whitespace
        begin, size, owner = begin[inside], size[inside], owner[inside]
        texts = [joined[b:b + n] for b, n in zip(begin.tolist(), size.tolist())]
        bounds = np.searchsorted(owner, np.arange(len(chunks) + 1), side="left").tolist()
        out = [texts[bounds[k]:bounds[k + 1]] for k in range(len(chunks))]
        if strip:
            out = [[t.strip() for t in toks if not t.isspace()] for toks in out]
        return out

    def count_sentences(self, text: str) -> int | None:
        """How many sentences datatrove's `split_into_sentences(text)` gives, or None to ask it.

        datatrove runs the whole blank pipeline: tokenizer, lexemes with every lexical
        attribute, the sentencizer, a Span per sentence. The count needs only the tokens and
        the sentencizer's rule, replayed here as spaCy's `Sentencizer.predict` states it: a
        new sentence starts at the first token after a sentence-final character (its
        `punct_chars`) that is neither such a character nor punctuation (`is_punct`, the
        pipeline's own lexical getter). The tokens come from the copy of the tokenizer
        without lexical attributes. Whitespace tokens count (they are not punctuation).
        tests/test_words.py compares the count with datatrove's on real lines."""
        sentencizer = self._sentencizer()
        if sentencizer is None or _BREAKS_SPACY in text:
            return None
        pieces = text.split(" ")
        chunks = list(filter(None, pieces))
        if not chunks:
            return self._count_sentences_of_tokens(text)
        entries = self._entries(chunks)
        if self._straddled_boundaries(text, chunks, entries):  # a special case may span a space: spaCy splits it
            return self._count_sentences_of_tokens(text)
        return self._count_sentences_of_chunks(pieces, entries)

    def _count_sentences_of_chunks(self, pieces: list[str], entries: list[list]) -> int:
        """The sentencizer's count from each chunk's own tokens (cached per chunk).

        The rule is a two-state machine (has a sentence-final character been seen since the
        last sentence start?), so a chunk acts on the count through a step for each state,
        kept with the chunk. Between chunks, spaCy makes a whitespace token of every run of
        two or more spaces (at the start and the end of the text too); a whitespace token is
        neither sentence-final nor punctuation, so it starts a sentence after a period, as a
        word would, and runs of such tokens act as one. Whitespace inside a chunk (tabs,
        no-break spaces) is in the chunk's own tokens."""
        seen = False  # a sentence-final character since the last sentence start
        sentences = 1
        spaces = 0  # empty pieces since the last chunk: text.split(" ") gives one per extra space
        entries_in_order = iter(entries)
        for piece in pieces:
            if not piece:
                spaces += 1
                continue
            if spaces and seen:  # a whitespace token after a period (the text's start has no period)
                sentences += 1
                seen = False
            spaces = 0
            entry = next(entries_in_order)
            step = entry[3]
            if step is None:
                step = entry[3] = self._sentence_steps(piece)
            if seen:
                sentences += step[2]
                seen = step[3]
            else:
                sentences += step[0]
                seen = step[1]
        if spaces >= 2 and seen:  # two or more spaces at the end are a whitespace token
            sentences += 1
        return sentences

    def _sentence_steps(self, chunk: str) -> tuple[int, bool, int, bool]:
        """What the chunk's tokens (spaCy, alone) do to the count, from either state (see _ONE_PLAIN_TOKEN)."""
        from spacy.attrs import IDX, LENGTH

        punct_chars, is_punct = self._sentencizer()
        with self._vocab.memory_zone():
            spans = self._with_rules(chunk).to_array([IDX, LENGTH]).tolist()
        kinds = []  # "." sentence-final, "p" other punctuation, "w" anything else
        for begin, size in spans:
            token = chunk[begin:begin + size]
            kinds.append("." if token in punct_chars else ("p" if is_punct(token) else "w"))
        steps = []
        for seen in (False, True):
            new = 0
            for kind in kinds:
                if kind == ".":
                    seen = True
                elif seen and kind == "w":
                    new += 1
                    seen = False
            steps += [new, seen]
        return tuple(steps)  # type: ignore[return-value]

    def _count_sentences_of_tokens(self, text: str) -> int:
        """The sentencizer's rule over spaCy's tokens of the whole text."""
        from spacy.attrs import IDX, LENGTH

        punct_chars, is_punct = self._sentencizer()
        with self._vocab.memory_zone():
            spans = self._with_rules(text).to_array([IDX, LENGTH]).tolist()
        if not spans:
            return 0
        sentences, seen_period = 1, False
        for begin, size in spans:
            token = text[begin:begin + size]
            if token in punct_chars:
                seen_period = True
            elif seen_period and not is_punct(token):
                sentences += 1
                seen_period = False
        return sentences

    def _sentencizer(self):
        """(punct_chars, memoised is_punct) of the inner pipeline's sentencizer; None without one."""
        if self._sentence_rule is None:
            from spacy.attrs import IS_PUNCT

            nlp = self._inner.tokenizer
            pipe = nlp.get_pipe("sentencizer") if "sentencizer" in nlp.pipe_names else None
            getter = nlp.vocab.lex_attr_getters.get(IS_PUNCT)
            if pipe is None or getter is None or len(nlp.pipe_names) != 1:
                self._sentence_rule = False
            else:
                memo: dict[str, bool] = {}

                def is_punct(token: str) -> bool:
                    found = memo.get(token)
                    if found is None:
                        if len(memo) > 200_000:
                            memo.clear()
                        found = memo[token] = bool(getter(token))
                    return found

                self._sentence_rule = (frozenset(pipe.punct_chars), is_punct)
        return self._sentence_rule or None

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _straddling_pairs(spacy_tokenizer, bare) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """For each special case the phrase matcher looks for (its string split by the affix rules into
    2+ tokens), every way to cut it in two: first part -> the second parts that may follow it."""
    pairs: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for string in spacy_tokenizer.rules:
        if not (spacy_tokenizer.find_prefix(string) or spacy_tokenizer.find_infix(string)
                or spacy_tokenizer.find_suffix(string) or " " in string):
            continue  # spaCy matches these during affix splitting, within one chunk
        tokens = tuple(t.text for t in bare(string))
        for j in range(1, len(tokens)):
            pairs.setdefault(tokens[:j], []).append(tokens[j:])
    return pairs


class _BridgeTable:
    """Which (last character of a chunk, first character of the next chunk) pairs some straddling
    candidate can have at a space: its first part's last character and its second part's first.
    `boundaries(text, chunks)` finds the boundaries between consecutive chunks (runs of non-spaces)
    that have such a pair: in a long text with numpy over its code points instead of a Python step
    per chunk; in a short one (a line C4 counts the sentences of) numpy's set-up would cost more."""

    NUMPY_FROM_CHUNKS = 150  # measured: ~15 us of numpy set-up against ~0.1 us per boundary in Python

    def __init__(self, pairs: set[tuple[str, str]]):
        import numpy as np

        self._pair_set = frozenset(pairs)

        lefts, rights = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
        # class 0: a character no candidate has there; code points past the table share the last slot
        self._size = 1 + max((ord(c) for c in lefts + rights), default=0)
        self._left = np.zeros(self._size + 1, dtype=np.int16)
        self._right = np.zeros(self._size + 1, dtype=np.int16)
        self._left[[ord(c) for c in lefts]] = np.arange(1, len(lefts) + 1)
        self._right[[ord(c) for c in rights]] = np.arange(1, len(rights) + 1)
        self._pairs = np.zeros((len(lefts) + 1, len(rights) + 1), dtype=bool)
        for a, b in pairs:
            self._pairs[self._left[ord(a)], self._right[ord(b)]] = True

    def boundaries(self, text: str, chunks: list[str]) -> list[int]:
        if len(chunks) < self.NUMPY_FROM_CHUNKS:
            pairs = self._pair_set
            return [i for i, (a, b) in enumerate(zip(chunks, islice(chunks, 1, None))) if (a[-1], b[0]) in pairs]
        import numpy as np

        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        change = np.diff((codes != _SPACE).view(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = np.flatnonzero(change == 1)      # first character of each chunk
        ends = np.flatnonzero(change == -1) - 1   # last character of each chunk
        left = self._left[np.minimum(codes[ends[:-1]], self._size)]
        right = self._right[np.minimum(codes[starts[1:]], self._size)]
        return np.flatnonzero(self._pairs[left, right]).tolist()


def _bridge_table(straddles: dict[tuple[str, ...], list[tuple[str, ...]]]) -> _BridgeTable:
    pairs = {("".join(first)[-1], "".join(second)[0]) for first, seconds in straddles.items() for second in seconds}
    return _BridgeTable(pairs)


# Languages whose datatrove word tokenizer is a plain spaCy pipeline that cuts at spaces; the
# others (zh/ja/th segmenters, Stanza, ...) do not give a text's words as its chunks' words.
CHUNKABLE = frozenset({"en", "de", "fr", "es", "it", "pt", "nl", "ru", "pl", "sv", "da", "nb", "fi", "cs", "ro",
                       "el", "hu", "uk", "ca", "hr", "sk", "sl", "bg", "lt", "lv", "et", "tr", "id"})


def fast_word_tokenizer(inner):
    """`inner` wrapped in the chunk cache when that gives exactly its words, else `inner` itself."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    if isinstance(inner, SpaCyTokenizer) and inner.language in CHUNKABLE and inner.config is None:
        return ChunkCachedWordTokenizer(inner)
    return inner


def import_spacy_without_torch() -> None:
    """Import spaCy so that its thinc layer does not import torch.

    thinc imports torch whenever it is installed (Shammie's `torch` extra installs it), which
    costs a crawl worker 2-4 s of start-up and ~200 MB, although spaCy's tokenizer and
    sentencizer, all the filters use, never touch it. While spaCy loads, `import torch`
    fails as if torch were absent; afterwards it imports normally, for any later user in
    the process. Nothing is done when either is already imported."""
    if "spacy" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        import spacy  # noqa: F401
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


# --------------------------------------------------------------------------- words for dedup and decontamination
#
# Dedup (exact and MinHash) and decontamination compare documents by the words of their
# simplify_text'ed text (`shammie.dedup.signatures.normalise_words`). FineWeb-2 splits those with
# the language's word tokenizer (`MinhashDedupSignature(language=...)`); for languages written with
# spaces between words that is a whitespace split once punctuation is gone, for the others (Chinese,
# Japanese, Korean, Thai, ...) the tokenizer segments the text. A language's settings file says
# which (`dedup.words`). The splitters are loaded once per worker process and warmed (jieba,
# SudachiPy, Kiwi and PyThaiNLP load their dictionaries on first use, seconds each), and that time
# is counted apart (`splitter_load_seconds`), never as the cost of the documents that follow.

_DEDUP_SPLITTERS: dict[str, Any] = {}
_LOAD_SECONDS = [0.0]


def dedup_splitter(language: str | None):
    """The word splitter dedup and decontamination use for a document of `language` (a lid.176 code,
    as the crawl wrote it in the `language` column): a function text -> words, or None for a split
    on whitespace (languages without settings, and those whose settings say `whitespace`)."""
    if not language:
        return None
    found = _DEDUP_SPLITTERS.get(language, _MISSING)
    if found is _MISSING:
        found = _DEDUP_SPLITTERS[language] = _load_dedup_splitter(language)
    return found


_MISSING = object()


def _load_dedup_splitter(language: str):
    import time

    if language not in available_languages():
        return None
    settings = load_language_settings(language)
    if not settings.dedup_splits_words:
        return None
    settings_for([language])  # a missing splitter package: one line naming what to install
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    if "jieba" in settings.requires:
        _quiet_jieba()
    started = time.process_time()
    split = load_word_tokenizer(settings.word_tokenizer).word_tokenize
    stop_words = settings.filters.get("gopher_quality", {}).get("stop_words") or ["warm"]
    split(" ".join(stop_words))  # loads the dictionary / model now, not on a document
    _LOAD_SECONDS[0] += time.process_time() - started
    return split


def dedup_splitters(languages) -> list:
    """`dedup_splitter` of each value of a `language` column (None entries allowed)."""
    return [dedup_splitter(language) for language in languages]


def load_dedup_splitters(languages) -> float:
    """Load and warm the splitters of `languages` (a worker's set-up); returns the CPU seconds it took."""
    before = _LOAD_SECONDS[0]
    for language in languages:
        dedup_splitter(language)
    return _LOAD_SECONDS[0] - before


def splitter_load_seconds() -> float:
    """CPU seconds this process has spent loading dedup word splitters."""
    return _LOAD_SECONDS[0]


def dedup_word_settings() -> dict[str, str]:
    """Language -> word tokenizer key, for every language whose dedup words come from its tokenizer
    (what a dedup or decontamination output depends on besides its inputs)."""
    out = {}
    for code in available_languages():
        settings = load_language_settings(code)
        if settings.dedup_splits_words:
            out[code] = settings.word_tokenizer
    return out


def warm_word_splitters(settings: dict) -> float:
    """Split a sample (the language's stop words) with each language's word tokenizer, as the filters
    split pages (datatrove's `split_into_words`, through the memo `filters.fineweb` installs), so that
    its dictionary or model loads in the worker's set-up and not on the first page of that language,
    where it would be billed to the first filter that splits words. Returns the CPU seconds it took."""
    import time

    from datatrove.utils.text import split_into_words

    started = time.process_time()
    for code, language in settings.items():
        if "jieba" in language.requires:
            _quiet_jieba()
        stop_words = language.filters.get("gopher_quality", {}).get("stop_words") or ["warm", "up"]
        split_into_words(" ".join(stop_words), language.word_tokenizer)
    return time.process_time() - started


def _quiet_jieba() -> None:
    import logging

    import jieba  # an optional dependency, needed by Chinese only

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary load to stderr at DEBUG level
