"""filters.xpath_subset: XPath 1.0 semantics kept exactly, and anything beyond the subset refused."""

from __future__ import annotations

import pytest
from lxml import etree, html

from shammie.filters.xpath_subset import EXSLT_REGEXP, CompiledXPath, Unsupported

NS = {"re": EXSLT_REGEXP}


def both(source: str, page: str):
    """(libxml2's elements, ours) for `source` on `page`, each as the elements' `name` attributes."""
    original = etree.XPath(source, namespaces=NS)
    tree = html.fromstring(page)
    ours = CompiledXPath(original, source, NS)
    return [e.get("name") for e in original(tree)], [e.get("name") for e in ours(tree)]


PAGE = """<div name="root" class="reply-x">
  <p name="p1" id="reply-1" class="zzz">a</p>
  <p name="p2" class="zzz" id="reply-1">b</p>
  <section name="s1" role="NAVIGATION"><span name="s1a" style="display:none">c</span></section>
  <div name="d1" class="Teaser"><h1>t</h1><div name="d2" class="bottom
">x</div></div>
  <ol name="o1" class="comment-list"><li name="li">y</li></ol>
  <cite name="c1"><quote name="q1">z</quote></cite>
</div>"""


@pytest.mark.parametrize("source", [
    ".//*[starts-with(@id|@class, 'reply-')]",          # the first attribute in source order
    ".//*[starts-with(@class|@id, 'zz')]",              # a union is in document order, not written order
    ".//*[contains(translate(@role, 'NAVIGTO', 'navigto'), 'nav')]",
    ".//*[contains(translate(@class, 'Tx', 't'), 'teaser')]",  # 'x' beyond the target is removed
    ".//*[self::div or self::p][re:test(@class, 'bottom(\\s|$)')]",
    ".//*[re:test(@class, 'bottom$')]",                 # Python's $ also matches before a final newline
    ".//*[re:test(@class, 'TEASER', 'i')]",
    ".//*[self::div or self::ol][not(.//h1) or re:test(@class, '^comment')]",
    ".//*[@style='display:none' or @id='reply-1']",
    ".//*[@class|@role]",
    ".//cite|.//quote|.//cite",                         # document order, each once
    ".//*[self::p][@id and @class][contains(@class, 'z')]",
    ".//div",                                           # descendants only: the context is not selected
    ".//*[self::p or self::div][@class][1]",            # per parent, the first child passing the tests
    "(.//*[self::p or self::div][@class])[1]",          # the first of all, in document order
    "(.//li)[1]|(.//p)[1]|(.//div)[1]",                 # a union of firsts, in document order
    "(.//nothing)[1]|.//cite",
    # true on elements without the attributes read: the constant the test gives then
    ".//*[not(@class) and not(starts-with(@id|@style, 'x'))]",
    ".//*[not(contains(@class, 'zzz'))]",
    ".//*[not(starts-with(@id|@class|@style, 'reply'))]",
    ".//*[not(@class) and not(self::p)]",               # reads the tag: no constant
    ".//*[not(@id) and not(.//quote)]",                 # reads descendants: no constant
])
def test_the_same_elements_as_libxml2(source):
    expected, got = both(source, PAGE)
    assert got == expected


def test_the_subset_is_exercised_by_those_cases():
    assert both(".//*[starts-with(@id|@class, 'reply-')]", PAGE)[1] == ["p1"]
    assert both(".//*[starts-with(@class|@id, 'zz')]", PAGE)[1] == ["p2"]
    assert both(".//*[re:test(@class, 'bottom$')]", PAGE)[1] == ["d2"]
    assert both(".//cite|.//quote|.//cite", PAGE)[1] == ["c1", "q1"]
    assert both(".//*[self::p or self::div][@class][1]", PAGE)[1] == ["p1", "d2"]
    assert both("(.//li)[1]|(.//p)[1]|(.//div)[1]", PAGE)[1] == ["p1", "d1", "li"]


@pytest.mark.parametrize("source", [
    ".//*[self::div][2]",                # positions other than [1]
    "(.//article)[1][1]",
    ".//*[self::div][1][@class]",
    "(.//article)[last()]",
    "//div",                             # from the document root
    ".//div/p",                          # child steps
    ".//*[rel='me']",                    # a child element, not an attribute
    ".//*[string-length(@class) > 3]",   # other functions, numbers
    ".//*[local-name()='annotation']",
    ".//*[x:test(@class, 'a')]",         # an unknown prefix
])
def test_beyond_the_subset_is_refused(source):
    with pytest.raises(Unsupported):
        CompiledXPath(etree.XPath(source, namespaces={**NS, "x": "urn:x"}), source, NS)


def test_a_call_on_an_element_tree_or_with_variables_goes_to_libxml2():
    source = ".//p"
    original = etree.XPath(source)
    ours = CompiledXPath(original, source, NS)
    doc = etree.ElementTree(html.fromstring(PAGE))
    assert [e.get("name") for e in ours(doc)] == [e.get("name") for e in original(doc)] == ["p1", "p2"]
