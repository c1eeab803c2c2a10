"""What install() puts in trafilatura's XPath expressions (Python evaluation, guarded regex tests)
selects exactly what the originals select."""

from __future__ import annotations

import gzip
import random

import pytest
from lxml.etree import XPath

from shammie.filters import trafilatura_xpaths as tx

NS = {"re": tx.REGEXP_NS}


def test_a_plain_attribute_test_is_guarded_by_the_attribute():
    source, n = tx.guard_regex_tests(".//*[re:test(@class, 'foo|bar') or @id='x']")
    assert n == 1
    assert source == ".//*[(@class and re:test(@class, 'foo|bar')) or @id='x']"


def test_a_union_subject_and_flags_are_guarded():
    source, n = tx.guard_regex_tests(".//*[re:test(@id|@class, 'Cookie', 'i')]")
    assert (source, n) == (".//*[(@id|@class and re:test(@id|@class, 'Cookie', 'i'))]", 1)


@pytest.mark.parametrize("call", [
    "re:test(@class, '^$')",          # matches the empty string: an absent attribute matches
    "re:test(@class, 'a*')",          # so does this
    "re:test(@class, '(?:x)?', 'i')",
    "re:test(string(.), 'foo')",      # not an attribute
    "re:test(@class, $pattern)",      # not a literal
    "re:test(@class, 'foo', 'm')",    # a flag we do not model
    "re:test(@class, '(')",           # not a Python regex
])
def test_calls_that_cannot_be_guarded_are_left_as_they_are(call):
    assert tx.guard_regex_tests(f".//*[{call}]") == (f".//*[{call}]", 0)


def test_the_empty_string_check_is_what_keeps_the_rewrite_exact():
    """A naive guard on a pattern matching '' would drop elements that have no such attribute."""
    from lxml import html

    tree = html.fromstring("<div><p>a</p><p class=''>b</p><p class='x'>c</p></div>")
    original = XPath(".//p[re:test(@class, '^$')]", namespaces=NS)
    naive = XPath(".//p[(@class and re:test(@class, '^$'))]", namespaces=NS)
    assert [p.text for p in original(tree)] == ["a", "b"]
    assert [p.text for p in naive(tree)] == ["b"]
    assert tx.guard_regex_tests(original.path)[1] == 0


def test_quotes_and_parentheses_inside_patterns_are_parsed():
    source = ".//*[re:test(@class, '(?:^| )ad-(x|y)') and re:test(@style, \"a'b\")][contains(@id, 'q')]"
    guarded, n = tx.guard_regex_tests(source)
    assert n == 2
    assert guarded == (".//*[(@class and re:test(@class, '(?:^| )ad-(x|y)')) and "
                       "(@style and re:test(@style, \"a'b\"))][contains(@id, 'q')]")


@pytest.fixture()
def installed():
    tx.install()
    yield tx.installed_pairs()


def test_the_trafilatura_extractor_installs_the_guards(installed):
    import trafilatura.xpaths as xp

    from shammie.filters.extract import make_extractor

    from shammie.filters.xpath_subset import CompiledXPath

    make_extractor("trafilatura")
    assert len(installed) >= 10  # trafilatura 2.x: most boilerplate expressions use re:test
    by_original = {id(o): g for o, g in installed}
    assert all(id(x) not in by_original for x in xp.OVERALL_DISCARD_XPATH)  # swapped in place
    # every pruning list is evaluated in Python; the expressions beyond the subset are guarded
    for name in ("OVERALL_DISCARD_XPATH", "TEASER_DISCARD_XPATH", "PRECISION_DISCARD_XPATH",
                 "DISCARD_IMAGE_ELEMENTS", "REMOVE_COMMENTS_XPATH", "REMOVE_COMMENTS_AND_LISTS_XPATH",
                 "RAW_TREE_PRUNE_XPATH"):
        assert all(isinstance(x, CompiledXPath) for x in getattr(xp, name)), name
    assert all(isinstance(x, CompiledXPath) for x in xp.BODY_XPATH)
    assert any(isinstance(x, XPath) and "@class and re:test(@class" in x.path for x in xp.AUTHOR_XPATHS)


def test_uninstall_puts_the_originals_back():
    import trafilatura.xpaths as xp

    tx.install()
    replaced = list(xp.OVERALL_DISCARD_XPATH) + [xp.BODY_XPATH[0]]
    tx.uninstall()
    try:
        originals = list(xp.OVERALL_DISCARD_XPATH) + [xp.BODY_XPATH[0]]
        assert all(isinstance(x, XPath) and "and re:test" not in x.path for x in originals)
        assert all(a is not b for a, b in zip(originals, replaced))
    finally:
        tx.install()


TAGS = ["div", "section", "span", "p", "article", "main", "aside", "item", "list", "header", "footer", "nav",
        "li", "ul", "a", "ref", "cite", "quote", "figure", "head", "table", "details", "ol", "h1", "script",
        "template", "svg", "main"]
# fragments of trafilatura's tokens, their case variants and near misses
WORDS = ["share", "Share", "shar", "social", "nav", "Nav", "navbar", "menu", "footer", "Footer", "ad-", " ad ",
         "-ad-", "hidden", " hidden", "hide-", "-hide-", "noprint", "bottom", "Bottom", "link", "links",
         "comments-title", "reply-", "akismet", "cookie", "Cookie", "consent", "teaser", "Teaser", "caption",
         "widget", "elementor-share-buttons", "infinite-scroll", "mvp-post-add-box", "byline", "tags", "meta",
         "respond", "signin", "message", "display:none", "display: none", "border", "post-content",
         "article-body", "entry-content", "content-main", "story-body", "primary", "comment", "x", "", " ",
         "Comment", "commentary", "disqus_thread", "cookie-banner", "COOKIEBOT", "OneTrust", "Main-Content",
         "page-Content", "nav ", "bottom\n", "ZendeskForm", "dfpAd", "bread-crumb", "post-nav", "MostPopularStories"]
ATTRIBUTES = ["class", "id", "style", "role", "data-component", "aria-hidden", "itemprop"]


def built_page(rng: random.Random, elements: int = 400) -> str:
    """A page of nested elements whose attributes mix the tokens (absent, empty, one or several)."""
    parts, depth = ["<html><body>"], 0
    for i in range(elements):
        tag = rng.choice(TAGS)
        attrs = []
        for name in rng.sample(ATTRIBUTES, len(ATTRIBUTES)):  # any order: `@id|@class` reads the first
            roll = rng.random()
            if roll < 0.45:
                continue  # absent: the case the guard skips
            value = "" if roll < 0.55 else rng.choice([" ", " ", "\t", "\n", "\u00a0"]).join(
                rng.choice(WORDS) + rng.choice(["", "-1", "x"]) for _ in range(rng.randint(1, 3)))
            attrs.append(f'{name}="{value}"')
        parts.append(f"<{tag} {' '.join(attrs)}>text {i} ")
        if rng.random() < 0.5 or depth > 12:
            parts.append(f"</{tag}>")
        else:
            depth += 1
            parts.append("<h1>title</h1>" if rng.random() < 0.05 else "")
    parts.append("</body></html>")
    return "".join(parts)


def _differences(pairs, tree) -> list[str]:
    out = []
    for original, guarded in pairs:
        if original(tree) != guarded(tree):
            out.append(original.path.strip()[:120])
    return out


def test_every_guarded_expression_selects_the_same_nodes_on_built_pages(installed):
    from trafilatura.utils import load_html

    rng = random.Random(5)
    checked = 0
    for _ in range(40):
        tree = load_html(built_page(rng))
        assert not _differences(installed, tree)
        checked += sum(len(o(tree)) for o, _ in installed)
    assert checked > 1000  # the pages do exercise the expressions


def _real_pages(shared) -> list[str]:
    from tests.test_words import _crawl_payloads

    bench = shared / "html" / "article-extraction-benchmark" / "html"
    pages = [gzip.decompress(p.read_bytes()).decode("utf-8", "replace") for p in sorted(bench.glob("*.html.gz"))]
    return pages + [p for p in _crawl_payloads(shared) if "<" in p]


@pytest.mark.shared_data
def test_every_guarded_expression_selects_the_same_nodes_on_real_pages(shared_data, installed):
    from trafilatura.utils import load_html

    pages = _real_pages(shared_data)
    assert len(pages) >= 200
    matched = 0
    for page in pages:
        tree = load_html(page)
        if tree is None:
            continue
        assert not _differences(installed, tree)
        matched += sum(len(o(tree)) for o, _ in installed)
    assert matched > 1000


@pytest.mark.shared_data
def test_extracted_text_of_real_pages_is_unchanged(shared_data):
    import trafilatura
    from trafilatura.deduplication import LRU_SIZE, LRUCache

    def extract_all(pages):  # FineWeb's settings, as filters.extract calls them; a fresh cache per page
        return [trafilatura.extract(p, favor_precision=True, include_comments=False,
                                    deduplicate=LRUCache(maxsize=LRU_SIZE)) for p in pages]

    pages = _real_pages(shared_data)
    tx.install()
    guarded = extract_all(pages)
    tx.uninstall()
    try:
        original = extract_all(pages)
    finally:
        tx.install()
    assert sum(t is not None for t in original) >= 150
    assert guarded == original


def _classes(tree) -> list[type]:
    return [type(node) for node in tree.iter()]


def test_the_c_level_lookup_gives_every_node_lxml_htmls_class():
    from lxml import html

    page = ("<html><body><!-- c --><form><input name=a><select><option>x</select><textarea>t</textarea>"
            "<label>l</label></form><div class=x>d<p>p</p></div>&amp;<?pi x?></body></html>")
    reference = html.HTMLParser()
    fast = html.HTMLParser()
    fast.set_element_class_lookup(tx.element_class_lookup())
    expected, got = _classes(html.fromstring(page, parser=reference)), _classes(html.fromstring(page, parser=fast))
    assert got == expected
    assert html.FormElement in got and html.InputElement in got and html.HtmlComment in got


@pytest.mark.shared_data
def test_the_c_level_lookup_gives_the_same_classes_on_real_pages(shared_data):
    from lxml import html

    reference = html.HTMLParser(remove_comments=False)
    fast = html.HTMLParser(remove_comments=False)
    fast.set_element_class_lookup(tx.element_class_lookup())
    pages = _real_pages(shared_data)
    for page in pages:
        data = page.encode("utf-8", "surrogatepass")
        try:
            expected = _classes(html.fromstring(data, parser=reference))
        except Exception:  # noqa: BLE001 - an empty document: both parsers refuse it
            continue
        assert _classes(html.fromstring(data, parser=fast)) == expected
