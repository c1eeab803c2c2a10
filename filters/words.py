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
token, across which nothing can match), and answers from the cache unless a boundary of
the text could start a straddling special case, in which case the text goes to spaCy
whole. The output is spaCy's, word for word: tests/test_words.py checks it on real texts
and benchmarks/word_split.py measures the speed.

Hand-written because neither spaCy nor datatrove keeps tokenizations across texts (spaCy's
own cache still builds a Doc and a Python object per token for every text).
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_CACHE_CHUNKS = 500_000  # ~100 MB of cached chunks and their words at most
_SEPARATOR = " \n\n "  # a whitespace token between learned chunks: no special case spans it


class ChunkCachedWordTokenizer:
    """Wraps a datatrove `SpaCyTokenizer`; `word_tokenize(text)` returns exactly its words."""

    def __init__(self, inner, max_chunks: int = DEFAULT_CACHE_CHUNKS):
        from spacy.tokenizer import Tokenizer

        self._inner = inner
        self._max = max_chunks
        # chunk -> (its words, its tokens before special cases: only the first and last few matter)
        self._cache: OrderedDict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = OrderedDict()
        spacy_tokenizer = inner.tokenizer.tokenizer
        # The same affix rules without special cases: the token sequences the phrase matcher sees.
        self._bare = Tokenizer(spacy_tokenizer.vocab, rules={}, prefix_search=spacy_tokenizer.prefix_search,
                               suffix_search=spacy_tokenizer.suffix_search,
                               infix_finditer=spacy_tokenizer.infix_finditer,
                               token_match=spacy_tokenizer.token_match, url_match=spacy_tokenizer.url_match)
        self._straddles = _straddling_pairs(spacy_tokenizer, self._bare)
        self._rules = set(spacy_tokenizer.rules)
        self._edge = max((len(k) for k in self._straddles), default=1)
        self._last_tokens = {k[-1] for k in self._straddles}
        self.hits = self.misses = self.whole_texts = 0

    @property
    def language(self) -> str:
        return self._inner.language

    def word_tokenize(self, text: str) -> list[str]:
        chunks = [c for c in text.split(" ") if c]
        cache = self._cache
        unseen = [c for c in dict.fromkeys(chunks) if c not in cache]
        if unseen:
            self._learn(unseen)
        self.misses += len(unseen)
        self.hits += len(chunks) - len(unseen)
        entries = [cache[c] for c in chunks]
        while len(cache) > self._max:
            cache.popitem(last=False)
        if self._any_straddle(entries):
            self.whole_texts += 1
            return self._inner.word_tokenize(text)
        words: list[str] = []
        for entry in entries:
            words.extend(entry[0])
        return words

    def _any_straddle(self, entries) -> bool:
        last_tokens = self._last_tokens
        for left, right in zip(entries, entries[1:]):
            tail = left[2]
            if not tail or tail[-1] not in last_tokens:
                continue
            for j in range(1, min(len(tail), self._edge) + 1):
                starts = self._straddles.get(tail[-j:])
                if starts and any(right[1][:len(s)] == s or s[:len(right[1])] == right[1] for s in starts):
                    return True
        return False

    def _learn(self, chunks: list[str]) -> None:
        """Words (spaCy, special cases applied) and bare affix tokens of each unseen chunk.

        A chunk of ASCII letters only, or digits only, that is no special case is one token
        (no prefix, suffix or infix rule can apply to it) and needs no spaCy call: those are
        most of the unseen chunks of real text. The others go to spaCy, two calls in all."""
        rules = self._rules
        hard = []
        for c in chunks:
            if c.isascii() and (c.isalpha() or c.isdigit()) and c not in rules:
                self._cache[c] = ((c,), (c,), (c,))
            else:
                hard.append(c)
        if not hard:
            return
        words = self._tokens_per_chunk(hard, lambda s: self._inner._do_tokenize(s)[0], strip=True)
        bare = self._tokens_per_chunk(hard, self._bare, strip=False)
        edge = self._edge
        for c, w, b in zip(hard, words, bare):
            self._cache[c] = (tuple(w), tuple(b[:edge]), tuple(b[-edge:]))

    def _tokens_per_chunk(self, chunks: list[str], tokenize, strip: bool) -> list[list[str]]:
        joined = _SEPARATOR.join(chunks)
        starts, pos = [], 0
        for c in chunks:
            starts.append(pos)
            pos += len(c) + len(_SEPARATOR)
        out: list[list[str]] = [[] for _ in chunks]
        nlp = self._inner.tokenizer
        nlp.max_length = len(joined) + 10
        with nlp.memory_zone():
            k = 0
            for token in tokenize(joined):
                while k + 1 < len(starts) and token.idx >= starts[k + 1]:
                    k += 1
                text = token.text
                if text.isspace() and token.idx >= starts[k] + len(chunks[k]):
                    continue  # the separator
                if strip:
                    text = text.strip()
                    if not text:
                        continue
                out[k].append(text)
        return out

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
