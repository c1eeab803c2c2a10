"""trafilatura's XPath expressions with their regex tests guarded: the same matches, less CPU.

Why this is hand-written: trafilatura 2.x selects boilerplate with XPath expressions that
call EXSLT `re:test(@class, 'pattern')`. lxml runs every such call as a Python callback,
once per candidate element, including elements that have no `class` (or `id`, `style`)
attribute at all: the XPath string of an empty node-set is '' and the pattern is still
searched in it. On real pages these callbacks were the largest single cost of extraction
(`prune_unwanted_nodes`, ~9 ms of ~27 ms per page; benchmarks/crawl_profile.py).

The rewrite wraps each call as `(@class and re:test(@class, 'pattern'))`: libxml2 checks
that the attribute exists natively and skips the callback otherwise. XPath's `and` does
not evaluate its right side when the left is false, and an absent attribute gives '' to
`re:test`, so the two forms select the same elements exactly when the pattern cannot match
the empty string. That is checked for every pattern (with its flags); a call whose subject
is not a plain attribute (or union of attributes), or whose pattern can match '', is left
as it was. tests/test_trafilatura_xpaths.py compares the node sets of every rewritten
expression with the original's on real and built pages, and the extracted text of real pages.

The second change is in how lxml picks a Python class for each element proxy: lxml.html's
parser asks a Python method (`HtmlElementClassLookup.lookup`) for every proxy it creates,
about 3,700 times per page in trafilatura. `install()` gives trafilatura's parser lxml's own
C-level lookups with the same table (form elements get lxml.html's form classes, every
other element `HtmlElement`, comments `HtmlComment`...). benchmarks/trafilatura_speedups.py
measures both changes, alternating with and without them in one process.

The third is justext's stop-word list. trafilatura hands justext (its second fallback, run
for every page whose own extraction is short or "unclean": nearly every short page) the
union of all its stop-word lists, a tuple of 154,484 words, and justext looks it up in an
`lru_cache` keyed by that tuple: Python hashes a tuple anew at every call, 1.2 ms per page,
three quarters of trafilatura's time on a short page (benchmarks/crawl_profile.py on
make_short_pages.py's pages). `install()` replaces it by an equal tuple whose hash is
computed once: the same words, the same cache entry, the same frozen set. justext's
`normalize_whitespace`, run on every paragraph's text, calls a Python function for each run
of whitespace; `normalize_whitespace` below gives the same string with two C-level
substitutions (tests/test_crawl_extract_speed.py compares them on every whitespace class).
And justext's `ParagraphMaker.make_paragraphs` walks the tree through `lxml.sax.saxify`,
which builds each element's namespace map, attribute objects and qualified name for
handler methods that read only the tag, and the handler makes a paragraph object at every
block boundary: `make_paragraphs` below does the handler's work in one plain walk
(tests/test_crawl_extract_speed.py compares the paragraphs of built trees and real pages).

The fourth, and the largest, is filters/xpath_subset.py: every expression within its XPath
subset (all of trafilatura's pruning lists and `BODY_XPATH`) is evaluated in Python instead
of by libxml2, selecting the same elements at about a third of the CPU; only the expressions
beyond the subset (the metadata paths from the document root) keep libxml2 and get the guards.

The fifth is work done for nothing under FineWeb's settings:
- `_extract_and_compare` hands readability a copy of the raw tree. Under precision focus
  nothing reads the raw tree afterwards (`trafilatura_sequence`'s baseline and recall
  retries run only under other focuses, and `bare_extraction` is done with it), so
  `extract_and_compare` below hands it the tree itself: one whole-page copy less per page.
  That reading holds for the releases in `READ_RAW_TREE_ONCE`; on any other release the
  copy stays.
- justext's `Paragraph.text` joins, strips and normalises the paragraph's text nodes at
  every read, and justext reads it about eight times per paragraph (`bool(paragraph)` is
  one: `Paragraph` has a `__len__`); `paragraph_text` keeps the result until the text nodes
  change.
tests/test_crawl_extract_speed.py checks both, and tests/test_trafilatura_xpaths.py compares
the extracted text of real pages with and without `install()`.

`install()` swaps the Python evaluations and guarded expressions into trafilatura's modules in place (the lists
that trafilatura's functions hold are mutated, single expressions are replaced wherever a
trafilatura module refers to them), sets the parser's lookup and the stop-word tuple;
`uninstall()` puts the originals back.
"""

from __future__ import annotations

import re
import sys
import threading
from copy import copy

from shammie.filters.xpath_subset import Unsupported, compile_xpath

REGEXP_NS = "http://exslt.org/regular-expressions"
_CALL = "re:test("
# A subject we can guard: one attribute or a union of attributes, e.g. `@id|@class`.
_ATTRIBUTE_SUBJECT = re.compile(r"@[A-Za-z_][\w.-]*(\s*\|\s*@[A-Za-z_][\w.-]*)*")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
# A namespace prefix in use (`re:test`), not an axis (`self::div`).
_PREFIX = re.compile(r"(?<![:\w-])([A-Za-z_][\w.-]*):(?!:)")

_lock = threading.Lock()
_installed: list[tuple[object, str, object, object]] = []  # (container, key, original, guarded)
_active = False
_lookup_replaced = False  # trafilatura's parser had lxml.html's Python lookup, now the C one
# (owner, attribute, what its __dict__ held): the stop-word tuple, justext's whitespace and paragraphs
_patched: list[tuple[object, str, object]] = []


def _patch(owner, name: str, new) -> None:
    """Set `owner.name` to `new`, remembered for `uninstall()` (a class's own entry as stored,
    so a classmethod comes back as a classmethod)."""
    _patched.append((owner, name, vars(owner)[name]))
    setattr(owner, name, new)


class HashOnceTuple(tuple):
    """A tuple equal to `items` whose hash is computed once (a tuple hashes all its items at every call)."""

    def __new__(cls, items):
        self = super().__new__(cls, items)
        self._hash = tuple.__hash__(self)
        return self

    def __hash__(self):
        return self._hash


def _hash_justext_stoplist_once() -> None:
    """trafilatura's justext stop-word tuple, as a HashOnceTuple (see the module's docstring)."""
    from trafilatura import external

    original = external.JT_STOPLIST
    if isinstance(original, HashOnceTuple):
        return
    _patch(external, "JT_STOPLIST", HashOnceTuple(original or external.jt_stoplist_init()))


_NEWLINE_RUN = re.compile(r"\s*[\n\r]\s*")
_OTHER_RUN = re.compile(r"[^\S\n\r]+")


def normalize_whitespace(text: str) -> str:
    r"""justext.utils.normalize_whitespace: each maximal run of whitespace becomes "\n" when it
    holds a "\n" or "\r", else " ". The first pattern matches exactly the maximal runs holding
    one (its `\s*` start at the run's first character and end at its last); what is left are
    runs without them. Most texts have no whitespace but single spaces, which the
    substitutions leave as they are: every other whitespace character is not printable."""
    if text.isprintable() and "  " not in text:
        return text
    return _OTHER_RUN.sub(" ", _NEWLINE_RUN.sub("\n", text))


class _ParagraphPath:
    """What justext's `Paragraph.__init__` reads of a `PathInfo`: the two strings of one path."""

    __slots__ = ("dom", "xpath")

    def __init__(self, cell):
        steps = []
        while cell is not None:  # (name, order, parent cell): the path from its last element up
            steps.append(cell)
            cell = cell[2]
        steps.reverse()
        self.dom = ".".join(step[0] for step in steps)
        self.xpath = "/" + "/".join("%s[%d]" % step[:2] for step in steps)


def _paragraph(paragraph_class, cell, nodes: list[str], link_characters: int, tags: int):
    paragraph = paragraph_class(_ParagraphPath(cell))
    paragraph.text_nodes = nodes
    paragraph.chars_count_in_links = link_characters
    paragraph.tags_count = tags
    return paragraph


def make_paragraphs(root):
    """`justext.core.ParagraphMaker.make_paragraphs(root)`: the same paragraphs, made in one walk.

    justext's version sends lxml.sax's events (which build each element's namespace map,
    attribute objects and qualified name) to a handler that creates a `Paragraph` at every
    start and end of a block element, and each `Paragraph` joins the whole element path into
    two strings at once. Most of them never get text and are dropped. This walk does what the
    handler does (below, line by line) and keeps where a paragraph started as one cell of a linked path, so only
    paragraphs that get text have their path strings made. With `paragraph_text`, justext's
    part of a page went from 8.80 to 2.84 CPU ms (benchmarks/justext_paragraphs.py).

    A tree holding an entity node goes to the original, which is what decides how that fails.
    tests/test_crawl_extract_speed.py compares the paragraphs with justext's on built trees
    and real pages."""
    from justext.core import PARAGRAPH_TAGS, Paragraph, ParagraphMaker
    from lxml import etree

    if next(root.iter(etree.Entity), None) is not None:
        import lxml.sax  # what justext's own make_paragraphs does

        handler = ParagraphMaker()
        lxml.sax.saxify(root, handler)
        return handler.paragraphs
    comment, pi = etree.Comment, etree.ProcessingInstruction
    preceding, sibling = [], root.getprevious()  # saxify sends the root's sibling PIs too
    while getattr(sibling, "tag", None) is pi:
        preceding.append(sibling)
        sibling = sibling.getprevious()
    following, sibling = [], root.getnext()
    while getattr(sibling, "tag", None) is pi:
        following.append(sibling)
        sibling = sibling.getnext()

    paragraphs = []
    # PathInfo: the open elements as linked (name, order, parent) cells, and the count of each
    # name among the children of each open element (a top-level element is always number 1).
    path, children = None, []
    # ParagraphMaker's state: the paragraph being filled (where it started, its text nodes,
    # characters inside links, tag count; kept only once it has text), inside <a>, after <br>.
    started, nodes, link_characters, tags, has_text = None, [], 0, 0, False
    link = br = False
    # an explicit stack: saxify is compiled (no Python recursion limit), so a deep tree must not fail here
    stack: list = [*following[::-1], root, *preceding]
    while stack:
        item = stack.pop()
        if item.__class__ is tuple:  # endElementNS, then the element's tail: ("end", element, name)
            name = item[2]
            path = path[2]
            children.pop()
            boundary = name in PARAGRAPH_TAGS
            if name == "a":
                link = False
            text = item[1].tail
        else:
            tag = item.tag
            if tag is comment or tag is pi:  # no handler: only the tail
                boundary, text = False, item.tail
            else:  # startElementNS, then the element's text
                name = tag.split("}", 1)[1] if tag[:1] == "{" else tag
                siblings = children[-1] if children else {}
                order = siblings.get(name, 0) + 1
                siblings[name] = order
                path = (name, order, path)
                children.append({})
                boundary = name in PARAGRAPH_TAGS or (name == "br" and br)
                if boundary:
                    if name == "br":  # <br><br> separates paragraphs: not a tag of either
                        tags -= 1
                else:
                    br = name == "br"
                    if br:
                        nodes.append(" ")  # append_text(" ")
                    elif name == "a":
                        link = True
                    tags += 1
                stack.append(("end", item, name))
                stack.extend(reversed(item))
                text = item.text
        if boundary:  # _start_new_pragraph(), before the text or tail that follows
            if has_text:
                paragraphs.append(_paragraph(Paragraph, started, nodes, link_characters, tags))
            started, nodes, link_characters, tags, has_text = path, [], 0, 0, False
        if text and not text.isspace():  # characters(): blank text changes nothing
            text = normalize_whitespace(text)
            nodes.append(text)
            has_text = True
            if link:
                link_characters += len(text)
            br = False
    if has_text:  # endDocument
        paragraphs.append(_paragraph(Paragraph, started, nodes, link_characters, tags))
    return paragraphs


def paragraph_text(paragraph) -> str:
    """justext's `Paragraph.text` (its text nodes joined, stripped and whitespace-normalised),
    kept until the node list changes. justext only ever appends to `text_nodes` (in
    `append_text`), so the list and its length tell whether the kept text is still the text."""
    nodes = paragraph.text_nodes
    kept = paragraph.__dict__.get("_shammie_text")
    if kept is not None and kept[0] is nodes and kept[1] == len(nodes):
        return kept[2]
    text = normalize_whitespace("".join(nodes).strip())
    paragraph._shammie_text = (nodes, len(nodes), text)
    return text


def _speed_up_justext() -> None:
    from justext import paragraph
    from justext.core import ParagraphMaker

    if paragraph.normalize_whitespace is not normalize_whitespace:
        _patch(paragraph, "normalize_whitespace", normalize_whitespace)
    if vars(ParagraphMaker)["make_paragraphs"].__func__ is not make_paragraphs:
        _patch(ParagraphMaker, "make_paragraphs", staticmethod(make_paragraphs))
    if vars(paragraph.Paragraph)["text"].fget is not paragraph_text:
        _patch(paragraph.Paragraph, "text", property(paragraph_text))


# trafilatura releases whose `trafilatura_sequence` and `bare_extraction` were read to check that,
# under precision focus, nothing reads the raw tree after `_extract_and_compare` (the module's
# docstring); a release not listed here keeps trafilatura's own copy.
READ_RAW_TREE_ONCE = frozenset({"2.3.1"})


def extract_and_compare(cleaned_tree, cleaned_tree_backup, tree, options):
    """`trafilatura.core._extract_and_compare`, handing readability the raw tree itself under
    precision focus (its last reader) and a copy under any other focus, as trafilatura does."""
    from trafilatura import core

    postbody, temp_text = core.extract_content(cleaned_tree, options)
    if not options.fast:
        raw_tree = tree if options.focus == "precision" else copy(tree)
        postbody, temp_text = core.compare_extraction(cleaned_tree_backup, raw_tree, postbody, temp_text, options)
    return postbody, temp_text


def _skip_the_raw_tree_copy() -> None:
    import trafilatura
    from trafilatura import core

    if trafilatura.__version__ in READ_RAW_TREE_ONCE and core._extract_and_compare is not extract_and_compare:
        _patch(core, "_extract_and_compare", extract_and_compare)


def element_class_lookup():
    """lxml.html's element classes, looked up in C: the same class for every node lxml.html's
    Python `HtmlElementClassLookup` gives (tags are lower case in a parsed HTML tree)."""
    from lxml import etree, html

    lookup = etree.ElementNamespaceClassLookup(etree.ElementDefaultClassLookup(
        element=html.HtmlElement, comment=html.HtmlComment, pi=html.HtmlProcessingInstruction,
        entity=html.HtmlEntity))
    lookup.get_namespace(None).update(html.HtmlElementClassLookup()._element_classes)
    return lookup


def _call_arguments(source: str, start: int) -> tuple[list[str], int]:
    """The arguments of the call whose '(' ends just before `start`, and the index after its ')'."""
    args, current, depth, quote = [], [], 0, None
    for i in range(start, len(source)):
        c = source[i]
        if quote:
            current.append(c)
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
            current.append(c)
        elif c == "(":
            depth += 1
            current.append(c)
        elif c == ")" and depth:
            depth -= 1
            current.append(c)
        elif c == ")":
            args.append("".join(current).strip())
            return args, i + 1
        elif c == "," and not depth:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(c)
    raise ValueError(f"unbalanced re:test( call in XPath: {source!r}")


def _literal(arg: str) -> str | None:
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\"" and arg[0] not in arg[1:-1]:
        return arg[1:-1]
    return None


def _can_skip_when_absent(subject: str, pattern_arg: str, flags_arg: str | None) -> bool:
    """True when `re:test(subject, pattern)` is false whenever `subject` selects no attribute."""
    if not _ATTRIBUTE_SUBJECT.fullmatch(subject):
        return False
    pattern = _literal(pattern_arg)
    flags = "" if flags_arg is None else _literal(flags_arg)
    if pattern is None or flags is None or set(flags) - set("gi"):
        return False
    try:
        compiled = re.compile(pattern, re.IGNORECASE if "i" in flags else 0)
    except re.error:
        return False
    return compiled.search("") is None


def guard_regex_tests(source: str) -> tuple[str, int]:
    """`source` with every safely guardable `re:test(@a, 'p')` written `(@a and re:test(@a, 'p'))`.

    Returns the new source and how many calls were guarded.

    (Writing the literal alternatives of a pattern as `contains()` calls instead was tried
    and is slower: libxml2 re-reads the attribute for each call, where one regex search
    covers all alternatives.)"""
    out, position, guarded = [], 0, 0
    while (start := source.find(_CALL, position)) >= 0:
        if start and (source[start - 1].isalnum() or source[start - 1] in "_-:"):
            out.append(source[position:start + len(_CALL)])  # part of a longer name
            position = start + len(_CALL)
            continue
        args, end = _call_arguments(source, start + len(_CALL))
        call = source[start:end]
        out.append(source[position:start])
        if len(args) in (2, 3) and _can_skip_when_absent(args[0], args[1], args[2] if len(args) == 3 else None):
            out.append(f"({args[0]} and {call})")
            guarded += 1
        else:
            out.append(call)
        position = end
    out.append(source[position:])
    return "".join(out), guarded


def _guarded_xpath(xpath):
    """The guarded copy of an lxml XPath, or None when nothing in it can be guarded."""
    from lxml.etree import XPath

    source = getattr(xpath, "path", None)
    if not isinstance(source, str) or _CALL not in source:
        return None
    # Only expressions whose one namespace prefix is `re` (we must re-declare every prefix).
    if set(_PREFIX.findall(_QUOTED.sub("''", source))) != {"re"}:
        return None
    new_source, guarded = guard_regex_tests(source)
    if not guarded:
        return None
    return XPath(new_source, namespaces={"re": REGEXP_NS})


def _replacement(xpath):
    """What `install()` puts in place of one of trafilatura's expressions: its Python evaluation
    when the expression is within filters.xpath_subset's subset, else its guarded copy, else None."""
    try:
        return compile_xpath(xpath, {"re": REGEXP_NS})
    except Unsupported:
        return _guarded_xpath(xpath)


def _trafilatura_modules():
    import trafilatura  # noqa: F401  (loads its submodules)

    return [m for name, m in list(sys.modules.items())
            if m is not None and (name == "trafilatura" or name.startswith("trafilatura."))]


def install() -> int:
    """Swap guarded expressions and the C-level class lookup into trafilatura (idempotent);
    return how many expressions changed."""
    from lxml.etree import XPath

    global _active, _lookup_replaced
    with _lock:
        if _active:
            return len(installed_pairs())
        _active = True
        from lxml import html
        from trafilatura import utils

        if isinstance(getattr(utils, "HTML_PARSER", None), html.HTMLParser):
            utils.HTML_PARSER.set_element_class_lookup(element_class_lookup())
            _lookup_replaced = True
        _hash_justext_stoplist_once()
        _speed_up_justext()
        _skip_the_raw_tree_copy()
        replacements: dict[int, object] = {}

        def guarded_for(xpath):
            if id(xpath) not in replacements:
                replacements[id(xpath)] = _replacement(xpath)
            return replacements[id(xpath)]

        seen_lists: set[int] = set()
        for module in _trafilatura_modules():
            for name, value in list(vars(module).items()):
                if isinstance(value, XPath):
                    new = guarded_for(value)
                    if new is not None:
                        _installed.append((module, name, value, new))
                        setattr(module, name, new)
                elif isinstance(value, list) and id(value) not in seen_lists \
                        and value and all(isinstance(x, XPath) for x in value):
                    seen_lists.add(id(value))
                    for i, x in enumerate(value):
                        new = guarded_for(x)
                        if new is not None:
                            _installed.append((value, i, x, new))
                            value[i] = new
        return len(installed_pairs())


def uninstall() -> None:
    """Put trafilatura's original expressions (and its parser's lookup) back."""
    global _active, _lookup_replaced
    with _lock:
        _active = False
        if _lookup_replaced:
            from lxml import html
            from trafilatura import utils

            utils.HTML_PARSER.set_element_class_lookup(html.HtmlElementClassLookup())  # what lxml.html sets
            _lookup_replaced = False
        for owner, name, original in reversed(_patched):
            setattr(owner, name, original)
        _patched.clear()
        for container, key, original, _ in reversed(_installed):
            if isinstance(container, list):
                container[key] = original
            else:
                setattr(container, key, original)
        _installed.clear()


def installed_pairs() -> list[tuple[object, object]]:
    """(original, guarded) for each expression `install()` replaced, once each."""
    pairs, seen = [], set()
    for _, _, original, guarded in _installed:
        if id(original) not in seen:
            seen.add(id(original))
            pairs.append((original, guarded))
    return pairs
