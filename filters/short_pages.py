"""Short cuts: pages whose verdict is certain are dropped before the steps that cannot save them.

Gopher quality drops a page whose extracted text has fewer than `min_doc_words` words (50 in
every language's settings) that are not punctuation alone, counted with the word splitter of
the language that language ID gave the page. Language ID can only give a language the job
keeps, so a page is certain to be dropped when its count is under the minimum for *every*
kept language. Two short cuts use that (docs/crawl.md, "Short cuts"):

* `short_text`, after extraction: the extracted text's words counted exactly as Gopher quality
  counts them, with each kept language's own splitter. Language ID and the filters are
  skipped; the verdict is Gopher quality's own, so this is exact for any splitter.
* `short_page`, before extraction (trafilatura): every word trafilatura can return comes from
  the text of the page's parsed tree (the tree it parses itself, handed to it) outside the
  elements its cleaning deletes (<script>, <style>, <head>, <nav>, <footer>, <aside>, form
  controls, ...: `CleanedTexts`), which all three of its sources go through, or from a
  MathML formula's `alttext` (or from the one deleted element that is readability's whole
  article: `CleanedTexts.readability_roots`, bounded on its own). An upper bound of the words of any such text is counted per language:
    - spaCy splitters that cut at spaces (English and the other European languages): the
      runs of the text nodes (stretches of characters that are neither space nor punctuation),
      each counted alone by the language's own splitter. Extraction
      drops text, trims and adds spaces, adds list, table and line markers (punctuation),
      unescapes entities and joins text nodes. A run counted alone gives at least as many
      words as in any of those contexts, except a special case that splits one run into
      three or more words ("Cantve" -> "Ca", "nt", "ve") glued from pieces of two nodes:
      `_Glue` adds what such joins can add;
    - any other spaCy splitter (Chinese with jieba, Japanese with SudachiPy, Arabic): the
      number of characters that are neither space nor punctuation, since those splitters
      cut a text into disjoint pieces of it and a counted word holds one such character;
    - Kiwi (Korean) may restore morphemes that are not spelt in the text: nothing bounds its
      count, so a job that keeps Korean has no `short_page` cut (`short_text` still applies).
  tests/test_crawl_short_pages.py checks the bound against the extracted text of every real
  page at hand, and that every page a short cut drops is dropped by the full path.

The resiliparse extractor gets no `short_page` cut: it costs ~0.1 ms on a short page, about
what the bound costs, and `short_text` right after it saves the rest.

trafilatura's duplicate cache (`deduplicate`, fresh per input file) is the one way a page
can influence another: a page dropped by `short_page` is not extracted, so its paragraphs
do not enter the cache. docs/crawl.md says when that can change a later page of the same
file and what was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import chain
from typing import Callable

from datatrove.utils.text import PUNCTUATION_SET

from shammie.filters.gopher_quality import count_non_symbol_words

SHORT_PAGE = "short_page"
SHORT_TEXT = "short_text"
_PUNCTUATION = "".join(sorted(PUNCTUATION_SET))
_HEAD = 1024  # characters of a text looked at first for enough words
_ALONE = " \n\n "  # between runs: no special case of a splitter spans it (filters/words.py _SEPARATOR)
_SPACE_OR_PUNCTUATION = {ord(c): None for c in PUNCTUATION_SET}


def _chunks_with_a_word(chunks, enough: int) -> int:
    """How many space-separated chunks hold a character outside PUNCTUATION_SET, counting up to `enough`.

    With a splitter whose words are disjoint pieces of the text, each such chunk is in a counted
    word; one word covers at most `_Language.span` chunks (spaCy's special cases with spaces, such
    as Russian "в т.ч.", make one word of several)."""
    found = 0
    for chunk in chunks:
        if chunk.strip(_PUNCTUATION):
            found += 1
            if found >= enough:
                break
    return found


@dataclass(frozen=True)
class _Language:
    code: str
    tokenizer: str  # datatrove's tokenizer key
    minimum: int  # Gopher quality's min_doc_words
    disjoint: bool  # the splitter's words are disjoint pieces of the text (spaCy)
    by_chunks: bool  # ... and it cuts at spaces (the text's words are its chunks' words)
    span: int | None  # the most space-separated chunks one word can cover (None: not known)
    glue: "_Glue | None" = None  # special cases that give a run glued from pieces more words than its pieces

    def fewest_words(self, chunks: int) -> int:
        """At least this many counted words in a text with `chunks` chunks holding a word character."""
        return -(-chunks // self.span) if self.span else 0

    def fewest_in_bound(self, chunks: int) -> int:
        """At least this much `bound()` for a page whose text nodes have `chunks` such chunks."""
        if not self.disjoint:
            return 0  # no bound at all
        return self.fewest_words(chunks) if self.by_chunks else chunks  # the character count holds a chunk's

    def count(self, text: str) -> int:
        """Gopher quality's count of `text`'s words in this language."""
        from datatrove.utils.text import split_into_words

        return count_non_symbol_words(split_into_words(text, self.tokenizer))

    def bound(self, texts: list[str], text: str) -> int | None:
        """At least the count of any text extraction can make of the page's text nodes `texts`
        (`text`: the same, one per line); None when nothing bounds it."""
        if self.by_chunks:
            runs = [_RUN.findall(t) for t in texts]
            # each run counted alone: no special case spans the separator (filters/words.py)
            return self.count(_ALONE.join(chain.from_iterable(runs))) + self.glue.slack(runs)
        if self.disjoint:
            return sum(1 for ch in text.translate(_SPACE_OR_PUNCTUATION) if not ch.isspace())
        return None


class _Glue:
    """What spaCy's special cases can add to the count of runs counted alone.

    A run is a maximal stretch of characters that are neither space nor punctuation. A special
    case can split a run into more words than the run alone gives: English "I'ma" -> "I", "'m",
    "a" makes two words of the run "ma" (one alone), "Cantve" -> "Ca", "nt", "ve" three of
    "Cantve" (which alone is that special case, but glued from two text nodes, "C" + "antve",
    its pieces alone give two). `slack(texts)` adds, for the page's text nodes, each such run's
    `deficits` wherever it occurs, and `excess` per pair of nodes that can be glued into a run of
    three or more words (one ending in a proper prefix of it, one starting with a proper suffix)."""

    def __init__(self, rules: dict, count):
        from spacy.attrs import ORTH

        self.prefixes: set[str] = set()
        self.suffixes: set[str] = set()
        self.deficits: dict[str, int] = {}
        self.excess = 0
        for key, pieces in rules.items():
            spans, start = [], 0
            for piece in pieces:
                orth = piece.get(ORTH, "")
                spans.append((start, start + len(orth)))
                start += len(orth)
            for a, b in _runs(key):
                words = sum(1 for x, y in spans if x < b and y > a)
                run = key[a:b]
                if words > 1:
                    alone = count(run)
                    if words > alone:
                        self.deficits[run] = max(self.deficits.get(run, 0), words - alone)
                if words >= 3:  # glued from two or more pieces, each of them alone gives a word at least
                    self.prefixes.update(run[:i] for i in range(1, len(run)))
                    self.suffixes.update(run[i:] for i in range(1, len(run)))
                    self.excess = max(self.excess, words - 2)

    def slack(self, runs_per_node: list[list[str]]) -> int:
        added = ends = starts = 0
        for runs in runs_per_node:
            if runs:
                if self.deficits:
                    added += sum(self.deficits.get(r, 0) for r in runs)
                ends += runs[-1] in self.prefixes
                starts += runs[0] in self.suffixes
        return added + self.excess * min(ends, starts)


def _runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each maximal run of characters that are neither space nor punctuation."""
    return [m.span() for m in _RUN.finditer(text)]


_RUN = re.compile(r"[^\s" + re.escape(_PUNCTUATION) + r"]+")


def _splitter_kind(tokenizer_key: str) -> tuple[bool, bool, int | None]:
    """(disjoint, by_chunks, span) for the splitter datatrove gives `tokenizer_key` (through Shammie's wrappers)."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

    from shammie.filters.words import ChunkCachedWordTokenizer

    disjoint = by_chunks = False
    spacy = None
    layer, seen = load_word_tokenizer(tokenizer_key), 0
    while layer is not None and seen < 8:
        if isinstance(layer, SpaCyTokenizer):
            disjoint, spacy = True, layer
        by_chunks |= isinstance(layer, ChunkCachedWordTokenizer)
        layer, seen = vars(layer).get("_inner"), seen + 1
    span = None
    if by_chunks and disjoint:
        # spaCy's own tokenizer: a word is one chunk, or a special case whose string holds spaces
        rules = spacy.tokenizer.tokenizer.rules
        span = max((len(k.split()) for k in rules if k.strip()), default=1)
    return disjoint, by_chunks and disjoint, span


def _spacy_rules(tokenizer_key: str) -> dict:
    """The special cases of the spaCy pipeline behind `tokenizer_key`."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

    layer = load_word_tokenizer(tokenizer_key)
    while layer is not None and not isinstance(layer, SpaCyTokenizer):
        layer = vars(layer).get("_inner")
    return layer.tokenizer.tokenizer.rules


class ShortCuts:
    """The two short cuts for one job's kept languages (`settings`: code -> LanguageSettings)."""

    def __init__(self, settings: dict):
        languages = []
        for code, s in settings.items():
            minimum = (s.filters.get("gopher_quality") or {}).get("min_doc_words")
            if not minimum:  # a language whose settings drop no page for length: nothing is certain
                languages = []
                break
            disjoint, by_chunks, span = _splitter_kind(s.word_tokenizer)
            language = _Language(code, s.word_tokenizer, int(minimum), disjoint, by_chunks, span)
            if by_chunks:
                language = replace(language, glue=_Glue(_spacy_rules(s.word_tokenizer), language.count))
            languages.append(language)
        # cheap splitters first: a page is let through as soon as one language has enough words
        self.languages = sorted(languages, key=lambda x: (not x.by_chunks, not x.disjoint))
        self.enabled = bool(self.languages)
        self.pages_bounded = self.enabled and all(x.disjoint for x in self.languages)
        # Counting a text in every kept language costs little when they all split at spaces with
        # spaCy (0.03 ms per short text each); jieba, SudachiPy, Arabic spaCy and Kiwi cost
        # 0.1-0.9 ms each even on a short text. A job keeping any of those counts after language
        # ID instead, in the page's own language only (`text_is_short_in`, the `ShortTextStep`).
        self.before_language = self.enabled and all(x.by_chunks for x in self.languages)
        self._by_code = {x.code: x for x in self.languages}
        self._most = max((x.minimum for x in self.languages), default=0)
        # chunks enough to know a text or page is not short by some language's count or bound
        self._enough_text = min((x.minimum * x.span for x in self.languages if x.span), default=None)
        self._enough_page = min((x.minimum * (x.span if x.by_chunks else 1) for x in self.languages
                                 if x.disjoint and (x.span or not x.by_chunks)), default=None)

    def warm_up(self) -> None:
        """Load every splitter the short cuts may use (a lazy load would land in a page's time)."""
        for language in self.languages:
            language.count("Warm-up text, one two three.")

    def text_is_short(self, text: str) -> bool:
        """Gopher quality would drop `text` whatever language ID says (exact)."""
        if not self.enabled:
            return False
        enough = self._enough_text
        if enough is not None:
            # chunks of the text's start first (a long text has enough there; a chunk cut in two
            # at the end of the start is still one chunk of the text)
            for part in (text[:_HEAD], text) if len(text) > _HEAD else (text,):
                chunks = part.split()
                if len(chunks) >= enough:
                    found = _chunks_with_a_word(chunks, enough)
                    if any(x.fewest_words(found) >= x.minimum for x in self.languages):
                        return False  # enough words for some language's minimum: not short
        return all(x.count(text) < x.minimum for x in self.languages)

    def text_is_short_in(self, text: str, code: str | None) -> bool:
        """Gopher quality of language `code` would drop `text` for having too few words (exact)."""
        language = self._by_code.get(code) if self.enabled else None
        return language is not None and language.count(text) < language.minimum

    def page_is_short(self, texts: list[str]) -> bool:
        """No text extraction can make of the page's text nodes `texts` has enough words in any kept language."""
        if not self.pages_bounded:
            return False
        text = "\n".join(texts)
        if self._enough_page is not None:
            found = _chunks_with_a_word(text.split(), self._enough_page)
            if any(x.fewest_in_bound(found) >= x.minimum for x in self.languages):
                return False
        for language in self.languages:
            bound = language.bound(texts, text)
            if bound is None or bound >= language.minimum:
                return False
        return True

    def may_be_short(self, html: str) -> bool:
        """A quick look at the raw HTML: False when its text outside tags, <script> and <style>
        has four times the most words any kept language asks for (then the page is not parsed
        for `page_is_short`: menus, footers and the like, which the bound leaves out, are seldom
        that long). Only decides whether to look closer, so it need not be exact."""
        return _visible_chunks(html, 4 * self._most) < 4 * self._most


# text between tags that is not only spaces (the search for ">" runs in C; most tags have none)
_TEXT_AFTER_TAG = re.compile(r">\s*+([^<\s][^<]*)")
_BODY = re.compile(r"<body[\s>]", re.I)
_SKIPPED_CONTENT = ("script", "style")


def _visible_chunks(html: str, enough: int) -> int:
    """Space-separated chunks of the text between tags, outside <script> and <style>, counting up
    to `enough` (roughly: only to decide whether to look closer)."""
    start = html.find("<")
    if start < 0:
        return len(html.split())
    found = len(html[:start].split())
    body = _BODY.search(html, start)  # the head's text (its title) never reaches the text
    for m in _TEXT_AFTER_TAG.finditer(html, body.start() if body else start):
        tag = html.rfind("<", 0, m.start())
        if html[tag + 1:tag + 7].lower().startswith(_SKIPPED_CONTENT):
            continue
        found += len(m.group(1).split())
        if found >= enough:
            break
    return found


class ShortTextStep:
    """`short_text` after language ID, for jobs whose splitters are too dear to run in every kept
    language (`ShortCuts.before_language` False): Gopher quality's count in the language language
    ID gave the page, before Gopher repetition and the rest. Used as a step of the filter chain."""

    def __init__(self, cuts: Callable[[], ShortCuts]):
        self._cuts = cuts  # the stage's current short cuts

    def filter(self, doc):
        from shammie.filters.fineweb import FILTER_LANGUAGE

        if self._cuts().text_is_short_in(doc.text, doc.metadata.get(FILTER_LANGUAGE)):
            return False, None
        return True


class PageCheck:
    """`short_page` for one extractor: `examine(html)` -> (short, what to hand the extractor)."""

    def __init__(self, cuts: ShortCuts, extractor_name: str):
        self._cuts = cuts
        self.active = cuts.pages_bounded and extractor_name == "trafilatura"
        self._parse: Callable | None = None
        self._texts: Callable | None = None
        if self.active:
            from trafilatura.utils import load_html

            self._parse = load_html
            self._texts = CleanedTexts()

    def examine(self, html: str) -> tuple[bool, object]:
        if not self.active or not self._cuts.may_be_short(html):
            return False, html
        tree = self._parse(html)  # trafilatura's own parse: extract() takes the tree as it is
        if tree is None:
            return False, html
        if self._cuts.page_is_short(self._texts(tree)) and all(
                self._cuts.page_is_short(texts) for texts in self._texts.readability_roots(tree)):
            return True, None
        return False, tree


class CleanedTexts:
    """`texts(tree)`: the text nodes of a page that can reach trafilatura's output (FineWeb's
    settings: precision, no comments, tables, no images, no links): every text and tail except
    inside the elements its `tree_cleaning` deletes with their content, plus MathML's `alttext`.

    All three of trafilatura's sources pass through that cleaning: its own extractor and justext
    read the cleaned tree, and readability's article is cleaned again (`sanitize_tree`) before it
    can be used, except the article's root element, which the cleaning cannot delete
    (`readability_roots`: those texts are bounded separately). The cleaning keeps a deleted element's tail; keeps a <form> that holds most of the
    page's text (as a <div>) and a <figure> that holds a table; and turns a formula into text
    (its TeX annotation, else its `alttext`) before deleting <math>: those stay in here.
    (A walk that skips the deleted subtrees; the same nodes by XPath took 20-100x longer.)"""

    def __init__(self):
        from trafilatura.settings import MANUALLY_CLEANED

        self._deleted = frozenset(t for t in MANUALLY_CLEANED if t not in ("form", "figure", "math"))

    def __call__(self, tree) -> list[str]:
        return self._walk(tree)  # the page's <html>: never a deleted element

    def readability_roots(self, tree) -> list[list[str]]:
        """The texts that survive the cleaning when a deleted element is the root of readability's article.

        The cleaning cannot delete the root of the tree it cleans (lxml removes an element from its
        parent), so when readability's article is one deleted element, e.g. a page whose <body>
        holds a <nav> and a <div class="sidebar"> that readability drops as an unlikely candidate,
        that element's own text comes out (70 words of a <nav> or <footer>, checked). Readability
        returns <body> when it finds no candidate, and lxml parses a <body> with a single child
        element as that child: the deleted direct children of <body> are the elements that can be
        that root. <script> and <style> are not (readability drops them first)."""
        body = tree.find("body") if tree.tag != "body" else tree
        if body is None:
            return []
        return [self._walk(child) for child in body
                if isinstance(child.tag, str) and child.tag in self._deleted and child.tag not in ("script", "style")]

    def _walk(self, tree) -> list[str]:
        """The texts of `tree` outside the deleted elements below it (the cleaning keeps its root)."""
        from lxml.etree import iterwalk

        deleted, out = self._deleted, []
        walk = iterwalk(tree, events=("start", "end"))
        for event, element in walk:
            if event == "end":
                if element.tail:
                    out.append(element.tail)
                continue
            tag = element.tag
            if element is not tree and (tag in deleted or (tag == "figure" and element.find(".//table") is None)):
                walk.skip_subtree()  # its tail still comes with its "end"
                continue
            if element.text and isinstance(tag, str):
                out.append(element.text)
            if tag == "math" and element.get("alttext"):
                out.append(element.get("alttext"))
        return out
