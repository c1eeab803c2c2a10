"""Exact speed-ups of extraction around justext (filters/trafilatura_xpaths.py): the stop-word tuple hashed once,
whitespace normalised by two substitutions, paragraphs made without lxml.sax."""

from __future__ import annotations

import pytest

from shammie.filters import trafilatura_xpaths as tx


class CountedHash(str):
    calls = 0

    def __hash__(self):
        CountedHash.calls += 1
        return str.__hash__(self)


def test_a_hash_once_tuple_hashes_its_items_once_and_equals_the_tuple():
    items = [CountedHash(f"w{k}") for k in range(100)]
    plain = tuple(items)
    CountedHash.calls = 0
    once = tx.HashOnceTuple(items)
    assert CountedHash.calls == 100
    for _ in range(5):
        assert hash(once) == hash(plain)
    assert CountedHash.calls == 100 + 5 * 100  # only the plain tuple's hashes went through the items again
    assert once == plain and {plain: 1}[once] == 1


def test_trafilatura_hands_justext_a_stop_word_tuple_hashed_once():
    from justext.utils import get_stoplist, get_stoplists
    from trafilatura import external

    from shammie.filters.extract import make_extractor

    make_extractor("trafilatura")
    stoplist = external.JT_STOPLIST
    assert isinstance(stoplist, tx.HashOnceTuple)
    # the same words trafilatura's own jt_stoplist_init gives: every justext stop-word list
    assert set(stoplist) == {w for language in get_stoplists() for w in get_stoplist(language)}
    assert len(stoplist) > 100_000
    tx.uninstall()
    try:
        assert not isinstance(external.JT_STOPLIST, tx.HashOnceTuple)
    finally:
        tx.install()
    assert isinstance(external.JT_STOPLIST, tx.HashOnceTuple)


def test_justexts_whitespace_normalisation_is_the_same_string():
    """Every whitespace class (Unicode's too), runs with and without newlines, at the ends."""
    import random
    import re

    from justext.utils import normalize_whitespace as justexts

    spaces = [c for c in map(chr, range(0x3001)) if re.match(r"\s", c)]
    assert "\u3000" in spaces and "\x85" in spaces and "\u2028" in spaces
    rng = random.Random(3)
    pieces = spaces + ["a", "b c", "\n", "\r\n", "\r", "word", ""]
    texts = ["", " ", "\n", " \n ", "a\r b", "\u2028\u2029", "x \t\n\x0b y"] + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    for text in texts:
        assert tx.normalize_whitespace(text) == justexts(text), repr(text)


def test_justext_uses_the_fast_whitespace_normalisation_while_installed():
    from justext import paragraph

    tx.install()
    assert paragraph.normalize_whitespace is tx.normalize_whitespace
    tx.uninstall()
    try:
        assert paragraph.normalize_whitespace is not tx.normalize_whitespace
    finally:
        tx.install()


def _paragraphs(make, tree) -> list[dict]:
    return [dict(vars(p)) for p in make(tree)]


def _original_make_paragraphs():
    import lxml.sax
    from justext.core import ParagraphMaker

    def make(root):  # what justext's classmethod does
        handler = ParagraphMaker()
        lxml.sax.saxify(root, handler)
        return handler.paragraphs
    return make


def test_paragraphs_without_sax_are_justexts_on_built_trees():
    from lxml import etree, html

    page = ("<html><body><?pi before?><div>lead <a href='x'>link text</a> tail<br><br>after"
            "<!-- a comment --> more<p>para <b>bold</b><br>line</p><h2>Head</h2>"
            "<ul><li>one</li><li>two <a>l</a></li></ul><svg xmlns='http://www.w3.org/2000/svg'><text>t</text></svg>"
            "<table><tr><td>cell\r\n  text</td></tr></table></div>tail text<?pi after?></body></html>")
    tree = html.fromstring(page)
    xml = etree.fromstring("<r xmlns:x='urn:x'><x:p>ns <x:a>link</x:a></x:p><?pi?>t<p>b</p></r>")
    original = _original_make_paragraphs()
    for root in (tree, xml, tree.find(".//div")):
        expected = _paragraphs(original, root)
        assert expected and _paragraphs(tx.make_paragraphs, root) == expected


def test_a_very_deep_tree_gives_the_same_paragraphs():
    from lxml import html

    depth = 3000  # beyond Python's recursion limit
    tree = html.fromstring("<div>" * depth + "deep text <p>p</p>" + "</div>" * depth)
    assert _paragraphs(tx.make_paragraphs, tree) == _paragraphs(_original_make_paragraphs(), tree)


@pytest.mark.shared_data
def test_paragraphs_without_sax_are_justexts_on_real_pages(shared_data):
    from trafilatura.baseline import basic_cleaning
    from trafilatura.utils import load_html

    from tests.test_trafilatura_xpaths import _real_pages

    original = _original_make_paragraphs()
    compared = 0
    for page in _real_pages(shared_data):
        tree = load_html(page)
        if tree is None:
            continue
        tree = basic_cleaning(tree)  # what trafilatura hands justext
        expected = _paragraphs(original, tree)
        assert _paragraphs(tx.make_paragraphs, tree) == expected
        compared += len(expected)
    assert compared > 5000
