"""trafilatura's pruning XPath expressions evaluated in Python: the same elements, a third of the CPU.

Why this is hand-written: trafilatura 2.x deletes boilerplate with expressions such as
`.//*[self::div or self::p ...][contains(@class, 'x') or re:test(@id, 'p') ...]`, evaluated by
libxml2 several times per page (`prune_unwanted_nodes`). On the article benchmark's pages that
was 43 % of extraction (7.5 of 17.7 ms per page; benchmarks/trafilatura_speedups.py). libxml2's
XPath allocates objects for every step of every predicate on every element, and each
`re:test` is a callback into Python through lxml; writing the regular expressions out as
`contains()` calls was tried and is no faster. One Python pass over the elements with the
tag filter done in C (`iterdescendants(*tags)`), attribute lookups and compiled regular
expressions selects the same elements in about a third of the time. No library evaluates
XPath in Python, and none of this changes what trafilatura keeps.

Only a small subset of XPath 1.0 is compiled, the one trafilatura's pruning lists use:
unions of `.//name` or `.//*` (or `(...)[1]`, and a last `[1]` per parent, as `BODY_XPATH`
has them) with predicates made of `or`, `and`, `not()`, parentheses,
`self::name`, attribute sets (`@a`, `@a|@b`), `.//name` as a test, `@a='v'`,
`contains()`, `starts-with()`, `translate()` and EXSLT `re:test()` (as lxml implements it:
Python `re.search`, flag `i` for case-insensitive). Anything else (other positions, absolute
paths, child steps, numbers...) raises `Unsupported`, and the caller keeps libxml2's
expression. XPath semantics kept exactly:
- a node-set as a string is its first node's value in document order, '' when empty
  (attributes of one element are in source order, as libxml2 orders them);
- a node-set compared with `=` is true when any of its nodes has that value;
- `.//` from an element selects its descendants, not itself, in document order, each once.
tests/test_trafilatura_xpaths.py compares every compiled expression's elements with
libxml2's on real pages, and the extracted text of real pages with and without.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from lxml import etree

EXSLT_REGEXP = "http://exslt.org/regular-expressions"


class Unsupported(ValueError):
    """The expression uses XPath this module does not evaluate."""


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'[^']*'|"[^"]*")
    | (?P<descendants>\.//)
    | (?P<self>self::[A-Za-z_][\w.-]*)
    | (?P<attribute>@[A-Za-z_][\w.-]*)
    | (?P<number>\d+)
    | (?P<punct>[\[\]()|=,*])
    | (?P<name>[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)
    )""", re.VERBOSE)


def _tokens(source: str) -> list[tuple[str, str]]:
    out, position = [], 0
    source = source.rstrip()
    while position < len(source):
        m = _TOKEN.match(source, position)
        if not m or m.end() == position:
            raise Unsupported(f"cannot read XPath at {source[position:position + 20]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        position = m.end()
    return out


# The parser writes each predicate as one Python expression over `el` and its attributes (each
# read once per element into a local variable), and the whole expression as one function
# compiled with `compile()`: nested closures cost a Python call per test, which ate most of the gain. Only names from the parser and
# `repr()` of the expression's literals go into the generated source.


class Step(NamedTuple):
    tags: set[str] | None        # the names the step selects; None: any element
    predicates: list[str]        # Python expressions over `el` and its attributes' local variables
    position: str | None         # None: all; "first-child": `[1]` per parent; "first": `(...)[1]`


class _Parser:
    def __init__(self, source: str, namespaces: dict[str, str]):
        self.tokens = _tokens(source)
        self.i = 0
        self.namespaces = namespaces
        self.constants: dict[str, object] = {}  # compiled regexes and translate() tables
        self.attributes_read: dict[str, str] = {}  # attribute name -> its local variable

    def attribute(self, name: str) -> str:
        """The local variable holding attribute `name` (None when absent), read once per element."""
        return self.attributes_read.setdefault(name, f"_a{len(self.attributes_read)}")

    def constant(self, value: object) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def peek(self, value: str | None = None, kind: str | None = None, ahead: int = 0) -> bool:
        if self.i + ahead >= len(self.tokens):
            return False
        k, v = self.tokens[self.i + ahead]
        return (value is None or v == value) and (kind is None or k == kind)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value, kind):
            got = self.tokens[self.i][1] if self.i < len(self.tokens) else "the end"
            raise Unsupported(f"expected {value or kind}, got {got!r}")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def string(self) -> str:
        return repr(self.take(kind="string")[1:-1])

    # union := part ('|' part)*;  part := step | '(' step ')' '[1]'
    def union(self) -> list[Step]:
        steps = [self.part()]
        while self.peek("|"):
            self.take("|")
            steps.append(self.part())
        if self.i != len(self.tokens):
            raise Unsupported(f"unexpected {self.tokens[self.i][1]!r}")
        return steps

    def part(self) -> Step:
        if not self.peek("("):
            return self.step()
        self.take("(")
        step = self.step()
        self.take(")")
        self.first_position()
        if step.position is not None:
            raise Unsupported("nested positions")
        return Step(step.tags, step.predicates, "first")

    def first_position(self) -> None:
        """`[1]`, the one position the subset takes (BODY_XPATH's)."""
        self.take("[")
        if self.take(kind="number") != "1":
            raise Unsupported("positions other than [1]")
        self.take("]")

    # step := './/' (name | '*') ('[' or ']')* ('[1]')?
    def step(self) -> Step:
        self.take(kind="descendants")
        tags = None if self.peek("*") else {self.take(kind="name")}
        if tags is None:
            self.take("*")
        elif any(":" in t for t in tags):
            raise Unsupported("prefixed element names")
        predicates = []
        while self.peek("["):
            if self.peek(kind="number", ahead=1):
                # `.//*[P][1]` is descendant-or-self::node()/child::*[P][1]: for each parent,
                # its first child that passes the earlier tests
                self.first_position()
                if self.peek("["):
                    raise Unsupported("predicates after a position")
                return Step(tags, predicates, "first-child")
            self.take("[")
            start = self.i
            test = self.or_()
            only_names = self.tokens[start:self.i]
            self.take("]")
            if tags is None and not predicates and all(
                    k == "self" or (k, v) == ("name", "or") for k, v in only_names):
                # `.//*[self::a or self::b]`: the names, filtered in C by iterdescendants()
                tags = {v[len("self::"):] for k, v in only_names if k == "self"}
                continue
            predicates.append(test)
        return Step(tags, predicates, None)

    def or_(self) -> str:
        return self._joined("or", self.and_)

    def and_(self) -> str:
        return self._joined("and", self.comparison)

    def _joined(self, word: str, part) -> str:
        """`part ('word' part)*`, as one parenthesised Python expression."""
        parts = [part()]
        while self.peek(word, "name"):
            self.take(word)
            parts.append(part())
        return "(" + f" {word} ".join(parts) + ")"

    def comparison(self) -> str:
        if self.peek(kind="attribute"):
            names = self.attributes()
            if self.peek("="):  # true when any of the attributes has the value
                self.take("=")
                wanted = self.string()
                return "(" + " or ".join(f"{self.attribute(n)} == {wanted}" for n in names) + ")"
            return "(" + " or ".join(f"{self.attribute(n)} is not None" for n in names) + ")"
        return self.primary()

    def attributes(self) -> tuple[str, ...]:
        names = [self.take(kind="attribute")[1:]]
        while self.peek("|") and self.peek(kind="attribute", ahead=1):
            self.take("|")
            names.append(self.take(kind="attribute")[1:])
        if any(":" in n for n in names):
            raise Unsupported("prefixed attribute names")
        return tuple(dict.fromkeys(names))

    def primary(self) -> str:
        if self.peek("("):
            self.take("(")
            test = self.or_()
            self.take(")")
            return test
        if self.peek(kind="self"):
            return f"(el.tag == {self.take(kind='self')[len('self::'):]!r})"
        if self.peek(kind="descendants"):  # `.//name` as a test: such a descendant exists
            self.take(kind="descendants")
            tag = self.take(kind="name")
            if self.peek("[") or ":" in tag:
                raise Unsupported("predicates or prefixes in a nested path")
            return f"(next(el.iterdescendants({tag!r}), None) is not None)"
        name = self.take(kind="name")
        self.take("(")
        if name == "not":
            inner = self.or_()
            self.take(")")
            return f"(not {inner})"
        if name in ("contains", "starts-with"):
            value = self.string_argument()
            self.take(",")
            needle = self.string()
            self.take(")")
            return f"({needle} in {value})" if name == "contains" else f"{value}.startswith({needle})"
        if name.endswith(":test") and self.namespaces.get(name.split(":")[0]) == EXSLT_REGEXP:
            value = self.string_argument()
            self.take(",")
            pattern = self.take(kind="string")[1:-1]
            flags = ""
            if self.peek(","):
                self.take(",")
                flags = self.take(kind="string")[1:-1]
            self.take(")")
            # lxml's EXSLT re:test: re.search with re.UNICODE, IGNORECASE when 'i' is in the flags
            search = re.compile(pattern, re.UNICODE | (re.IGNORECASE if "i" in flags else 0)).search
            return f"{self.constant(_remembered(search))}({value})"
        raise Unsupported(f"function {name}()")

    def string_argument(self) -> str:
        """An argument used as a string: an attribute set (its first value) or translate() of one."""
        if self.peek("translate", "name"):
            self.take("translate")
            self.take("(")
            inner = self.string_argument()
            self.take(",")
            source = self.take(kind="string")[1:-1]
            self.take(",")
            target = self.take(kind="string")[1:-1]
            self.take(")")
            # XPath translate(): characters of `source` beyond `target`'s length are removed;
            # a character repeated in `source` maps as its first occurrence.
            table: dict[int, int | None] = {}
            for k, ch in enumerate(source):
                table.setdefault(ord(ch), ord(target[k]) if k < len(target) else None)
            return f"{inner}.translate({self.constant(table)})"
        names = self.attributes()
        if len(names) == 1:
            return f"({self.attribute(names[0])} or '')"
        if len(names) == 2:  # most elements have at most one of the two: no need to read the order
            a, b = (self.attribute(n) for n in names)
            return f"(({a} or '') if {b} is None else {b} if {a} is None else _first(el, {names!r}))"
        return f"_first(el, {names!r})"


_FIRST_CALL = re.compile(r"_first\(el, \([^()]*\)\)")  # the parser's only other use of `el` with attributes
_READS_ELEMENT = re.compile(r"\bel\b")  # a test on the tag, descendants...

_REMEMBERED = 65_536  # answers kept per regular expression (then forgotten all at once)


def _remembered(search):
    """`search(s) is not None`, remembered per string: a page repeats the same few class and id
    values on many elements, and trafilatura's patterns are long alternations (one search of
    one value costs ~1 us; a dict lookup ~0.05). Bounded, so a crawl's distinct values do
    not pile up in a worker."""
    answers: dict[str, bool] = {}

    def test(value: str) -> bool:
        found = answers.get(value)
        if found is None:
            if len(answers) >= _REMEMBERED:
                answers.clear()
            found = answers[value] = search(value) is not None
        return found
    return test


def _first(el, names: tuple[str, ...]) -> str:
    """The string value of the node-set `@a|@b...`: its first attribute in document order,
    which for one element's attributes is their order in the source (as libxml2 orders them)."""
    for key in el.keys():
        if key in names:
            return el.get(key)
    return ""


class CompiledXPath:
    """Callable like an `lxml.etree.XPath` on an element: `expression(element) -> [elements]`.

    Anything but a call on one element (an ElementTree, variables) goes to libxml2's original."""

    def __init__(self, original: etree.XPath, source: str, namespaces: dict[str, str] | None = None):
        parser = _Parser(source, namespaces or {})
        steps = parser.union()
        self.original = original
        self.path = source
        namespace = {"_first": _first, **parser.constants}
        reads = parser.attributes_read
        if all(step.position is None for step in steps):
            # One pass over the descendants, each kept once; C filters the names when every
            # step names its elements (`.//name`, or a first predicate of only `self::` tests).
            self._steps = [(self._tags_of(steps), self._function(steps, reads, namespace, source), None)]
        else:
            self._steps = [(self._tags_of([step]), self._function([step], reads, namespace, source), step.position)
                           for step in steps]

    @staticmethod
    def _tags_of(steps: list[Step]) -> tuple[str, ...]:
        if any(step.tags is None for step in steps):
            return ()
        return tuple(sorted(set().union(*(step.tags for step in steps))))

    @staticmethod
    def _function(steps: list[Step], reads: dict[str, str], namespace: dict, source: str):
        alternatives = []
        for step in steps:
            named = [f"el.tag in {frozenset(step.tags)!r}"] if step.tags is not None and len(steps) > 1 else []
            alternatives.append("(" + " and ".join(named + step.predicates or ["True"]) + ")")
        test = " or ".join(alternatives)
        lines = "".join(f"    {var} = el.get({name!r})\n" for name, var in reads.items())
        name = f"<xpath {source.strip()[:40]!r}>"
        if reads and not _READS_ELEMENT.search(_FIRST_CALL.sub("", test)):
            # The test reads nothing of the element but these attributes, and most elements have
            # none of them: its value then is one constant, the test's value on an element without
            # attributes (an `_first(el, ...)` of absent attributes is '' on any element).
            exec(compile(f"def test(el):\n{lines}    return {test}\n", name, "exec"), namespace)
            without_any = bool(namespace.pop("test")(etree.Element("none")))
            lines += f"    if {' and '.join(f'{var} is None' for var in reads.values())}:\n"
            lines += f"        return {without_any}\n"
        exec(compile(f"def test(el):\n{lines}    return {test}\n", name, "exec"), namespace)
        return namespace.pop("test")

    def __call__(self, node, **variables):
        if variables or not isinstance(node, etree._Element) or isinstance(node, etree._Comment):
            return self.original(node, **variables)
        found = [self._select(node, *step) for step in self._steps]
        if len(found) == 1:
            return found[0]
        union = {el: None for part in found for el in part}  # proxies stay alive: identity is the node
        return sorted(union, key=lambda el: _document_position(node, el)) if len(union) > 1 else list(union)

    @staticmethod
    def _select(node, tags, test, position):
        candidates = node.iterdescendants(*tags) if tags else node.iterdescendants(etree.Element)
        if position is None:
            return [el for el in candidates if test(el)]
        if position == "first":
            return next(([el] for el in candidates if test(el)), [])
        out, parents = [], set()
        for el in candidates:
            if test(el):
                parent = el.getparent()
                if parent not in parents:
                    parents.add(parent)
                    out.append(el)
        return out

    def __repr__(self) -> str:
        return f"CompiledXPath({self.path.strip()[:60]!r}...)"


def _document_position(root, el) -> list[int]:
    """`el`'s place under `root` as child indices from the top: sorts in document order."""
    path = []
    while el is not root:
        parent = el.getparent()
        path.append(parent.index(el))
        el = parent
    return path[::-1]


def compile_xpath(original: etree.XPath, namespaces: dict[str, str] | None = None) -> CompiledXPath:
    """The Python evaluation of `original` (raises Unsupported when it uses XPath beyond the subset)."""
    source = getattr(original, "path", None)
    if not isinstance(source, str):
        raise Unsupported("not an XPath with a source")
    return CompiledXPath(original, source, namespaces)
