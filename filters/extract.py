"""Main-text extraction: trafilatura with FineWeb's settings (default), or resiliparse (fast).

`--extractor trafilatura` (FineWeb's extractor, the default) is described below.
`--extractor resiliparse` uses resiliparse's `extract_plain_text(main_content=True)`, the
extractor DCLM used: about 10x faster per page on real pages, at a lower token F1 against
gold article bodies (docs/crawl.md has the measured trade-off). Both are deterministic.

FineWeb ran `trafilatura.extract(html, favor_precision=True, include_comments=False,
deduplicate=True)` (datatrove's `Trafilatura` step) under a 1 s wall-clock timeout
in a sandbox process. Two of those choices make output depend on load and order:
- the timeout drops different pages under different load: Shammie has no
  wall-clock limit by default (payloads over 20 MB are dropped before decoding, a
  deterministic guard); `timeout_s` adds an opt-in safety net, counted as an error;
- `deduplicate=True` uses a process-wide cache that remembers earlier documents:
  Shammie passes a fresh cache per input file instead, so a file's output depends
  only on that file (the same as datatrove with one file per task).
Extraction runs in-process: no sandbox process and no pickling per page, and trafilatura's
pruning XPath expressions run in Python (filters.trafilatura_xpaths and
filters.xpath_subset: the same matches and text, see docs/crawl.md "Speed" for the
speed-up; benchmarks/trafilatura_speedups.py).
"""

from __future__ import annotations

import signal
import threading


class ExtractionTimeout(Exception):
    pass


EXTRACTORS = ("trafilatura", "resiliparse")


def extractor_version(name: str) -> str:
    """The installed version of an extractor's package: it changes the output, so it is recorded."""
    import importlib.metadata

    return importlib.metadata.version(name)


def make_extractor(name: str, timeout_s: float | None = None):
    """A new extractor for one input file: `.extract(html) -> str | None`."""
    if name == "trafilatura":
        return Extractor(timeout_s=timeout_s)
    if name == "resiliparse":
        return ResiliparseExtractor(timeout_s=timeout_s)
    raise ValueError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")


class ResiliparseExtractor:
    """resiliparse's main-content plain text, as DCLM extracted Common Crawl."""

    def __init__(self, timeout_s: float | None = None):
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        self._extract, self._parse = extract_plain_text, HTMLTree.parse
        self._timeout_s = timeout_s

    def extract(self, html: str) -> str | None:
        def run():
            text = self._extract(self._parse(html), main_content=True, alt_texts=False)
            return text.strip() or None

        if not self._timeout_s or threading.current_thread() is not threading.main_thread():
            return run()
        return _with_alarm(run, self._timeout_s)


class Extractor:
    """trafilatura with FineWeb's settings; one per input file (holds that file's dedup cache)."""

    def __init__(self, timeout_s: float | None = None):
        from trafilatura import extract
        from trafilatura.deduplication import LRU_SIZE, LRUCache

        from shammie.filters.trafilatura_xpaths import install

        install()  # the same output for less CPU (see that module)
        self._extract = extract
        self._cache = LRUCache(maxsize=LRU_SIZE)
        self._timeout_s = timeout_s

    def extract(self, html: str) -> str | None:
        def run():
            return self._extract(html, favor_precision=True, include_comments=False, deduplicate=self._cache)

        if not self._timeout_s or threading.current_thread() is not threading.main_thread():
            return run()
        return _with_alarm(run, self._timeout_s)


def _with_alarm(fn, seconds: float):
    def on_alarm(signum, frame):
        raise ExtractionTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
