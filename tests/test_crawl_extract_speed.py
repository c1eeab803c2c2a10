"""Exact speed-ups of extraction around justext (filters/trafilatura_xpaths.py): the stop-word tuple hashed once,
whitespace normalised by two substitutions, paragraphs made in one walk without lxml.sax, each paragraph's text
kept once read; and readability handed the raw tree itself under precision focus."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from shammie.filters import trafilatura_xpaths as tx


@contextmanager
def uninstalled():
    """trafilatura and justext as installed for the block, the speed-ups back after it."""
    tx.uninstall()
    try:
        yield
    finally:
        tx.install()


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
    with uninstalled():
        assert not isinstance(external.JT_STOPLIST, tx.HashOnceTuple)
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


def test_the_single_space_short_cut_is_exact():
    """Texts without other whitespace than single spaces are returned as they are: that holds
    because no whitespace character but the space is printable, in all of Unicode."""
    import re

    from justext.utils import normalize_whitespace as justexts

    whitespace = re.compile(r"\s")
    assert [c for c in map(chr, range(0x110000)) if c != " " and c.isprintable() and whitespace.match(c)] == []
    for text in ["one two three", " lead and trail ", "ünï cödé 漢字 words", "a  b", "a\u00a0b", "x\ty", "é\u2003"]:
        assert tx.normalize_whitespace(text) == justexts(text), repr(text)


def test_justext_uses_the_fast_whitespace_normalisation_while_installed():
    from justext import paragraph

    tx.install()
    assert paragraph.normalize_whitespace is tx.normalize_whitespace
    with uninstalled():
        assert paragraph.normalize_whitespace is not tx.normalize_whitespace


def _paragraphs(make, tree) -> list[dict]:
    # without the text paragraph_text keeps once it is read (justext reads it to drop empty paragraphs)
    return [{k: v for k, v in vars(p).items() if k != "_shammie_text"} for p in make(tree)]


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


def test_a_paragraphs_text_is_kept_until_a_text_node_is_appended():
    from justext.core import PathInfo
    from justext.paragraph import Paragraph
    from justext.utils import normalize_whitespace as justexts

    tx.install()
    assert isinstance(vars(Paragraph)["text"], property) and vars(Paragraph)["text"].fget is tx.paragraph_text
    paragraph = Paragraph(PathInfo().append("p"))
    for node in ["  Lead\n text", " ", "\u00a0more\u3000words\t", "", "\r\nend  "]:
        paragraph.append_text(node)
        expected = justexts("".join(paragraph.text_nodes).strip())
        assert paragraph.text == expected and paragraph.text == expected  # the second read is the kept one
        assert len(paragraph) == len(expected) and paragraph.words_count == len(expected.split())
    # a new list is a new text, even of the same length
    paragraph.text_nodes = ["replaced  list"] + [""] * (len(paragraph.text_nodes) - 1)
    assert paragraph.text == "replaced list"
    with uninstalled():
        assert vars(Paragraph)["text"].fget is not tx.paragraph_text
        assert Paragraph(PathInfo()).text == ""


class _Options:
    def __init__(self, focus: str, fast: bool = False):
        self.focus, self.fast = focus, fast


def _raw_trees_handed_to_readability(monkeypatch, focus: str, fast: bool = False) -> tuple[object, list]:
    from lxml import html
    from trafilatura import core

    handed = []
    monkeypatch.setattr(core, "extract_content", lambda tree, options: (tree, "text"))
    monkeypatch.setattr(core, "compare_extraction",
                        lambda backup, raw, body, text, options: handed.append(raw) or (body, text))
    tree = html.fromstring("<html><body><p>raw</p></body></html>")
    tx.extract_and_compare(html.fromstring("<p>c</p>"), html.fromstring("<p>b</p>"), tree, _Options(focus, fast))
    return tree, handed


def test_readability_gets_the_raw_tree_itself_only_under_precision_focus(monkeypatch):
    tree, handed = _raw_trees_handed_to_readability(monkeypatch, "precision")
    assert handed == [tree] and handed[0] is tree
    for focus in ("balanced", "recall"):  # trafilatura_sequence reads the raw tree again under these
        tree, handed = _raw_trees_handed_to_readability(monkeypatch, focus)
        assert len(handed) == 1 and handed[0] is not tree
        assert [e.text for e in handed[0].iter("p")] == ["raw"]
    assert _raw_trees_handed_to_readability(monkeypatch, "precision", fast=True)[1] == []


def test_the_raw_tree_copy_is_skipped_only_on_a_release_read_for_it():
    import trafilatura
    from trafilatura import core

    tx.install()
    if trafilatura.__version__ not in tx.READ_RAW_TREE_ONCE:
        assert core._extract_and_compare is not tx.extract_and_compare
        pytest.skip(f"trafilatura {trafilatura.__version__} is not in READ_RAW_TREE_ONCE: its own copy is kept")
    assert core._extract_and_compare is tx.extract_and_compare
    with uninstalled():
        assert core._extract_and_compare is not tx.extract_and_compare


@pytest.mark.shared_data
@pytest.mark.parametrize("focus", [{}, {"favor_recall": True}])
def test_extracted_text_under_other_focuses_is_unchanged(shared_data, focus):
    """Under balanced and recall focus trafilatura reads the raw tree after readability: the copy
    must stay there (FineWeb's precision focus is compared in test_trafilatura_xpaths.py)."""
    import trafilatura

    from tests.test_trafilatura_xpaths import _real_pages

    pages = _real_pages(shared_data)[:120]

    def extract_all():
        return [trafilatura.extract(p, include_comments=False, **focus) for p in pages]

    tx.install()
    installed = extract_all()
    with uninstalled():
        original = extract_all()
    assert sum(t is not None for t in original) >= 80
    assert installed == original
