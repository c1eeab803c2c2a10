"""justext's paragraphs and their classification as trafilatura runs them, as installed and with
filters/trafilatura_xpaths.py's install(), alternating in one process.

    .venv/bin/python benchmarks/justext_paragraphs.py [--corpus benchmarks/_work/corpus-8000] [--rounds 5]

Pages: as benchmarks/trafilatura_speedups.py takes them (default: the 181 pages of the shared
article-extraction benchmark). Each page is parsed and cleaned as trafilatura does before
justext (`load_html`, then `basic_cleaning`); every round copies each tree and runs what
trafilatura's `try_justext` runs on it: `make_paragraphs`, `classify_paragraphs` with its
stop-word tuple and settings, and `revise_paragraph_classification`. Two modes:
  * justext: as installed (lxml.sax events, a paragraph object at every block boundary,
    each paragraph's text computed at every read);
  * shammie: with `install()` (one walk, path strings only for paragraphs with text, each
    paragraph's text kept once read, the single-space short cut in whitespace normalisation).
Reports the median CPU ms per page of each mode (the tree copies are timed apart and taken
out), whether both gave every paragraph the same text and class, and on how many of the
pages trafilatura itself runs justext with FineWeb's settings (only where its own extraction
is short or unclean): justext's share of a crawl is that fraction of these per-page numbers.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from copy import copy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trafilatura_speedups import pages_and_rounds  # noqa: E402


def main() -> None:
    pages, rounds = pages_and_rounds(__doc__, 5)

    import trafilatura
    from justext.core import ParagraphMaker, classify_paragraphs, revise_paragraph_classification
    from trafilatura import external
    from trafilatura.deduplication import LRU_SIZE, LRUCache
    from trafilatura.baseline import basic_cleaning
    from trafilatura.utils import load_html

    from shammie.filters import trafilatura_xpaths

    trafilatura_xpaths.install()
    rescued = [0]
    rescue = external.justext_rescue

    def counted_rescue(*args, **kwargs):
        rescued[0] += 1
        return rescue(*args, **kwargs)

    external.justext_rescue = counted_rescue  # compare_extraction's one call of justext
    cache = LRUCache(maxsize=LRU_SIZE)
    for page in pages:
        trafilatura.extract(page, favor_precision=True, include_comments=False, deduplicate=cache)
    external.justext_rescue = rescue
    stoplist = external.JT_STOPLIST
    trees = [basic_cleaning(tree) for tree in map(load_html, pages) if tree is not None]

    def run() -> tuple[float, list]:
        copies = [copy(tree) for tree in trees]
        started = time.process_time()
        out = []
        for tree in copies:
            paragraphs = ParagraphMaker.make_paragraphs(tree)  # trafilatura's try_justext, step by step
            classify_paragraphs(paragraphs, stoplist, 50, 150, 0.1, 0.2, 0.25, True)
            revise_paragraph_classification(paragraphs, 150)
            out.append([(p.text, p.class_type) for p in paragraphs])
        return (time.process_time() - started) * 1000 / len(trees), out

    def set_mode(mode: str) -> None:
        trafilatura_xpaths.uninstall()
        trafilatura_xpaths.install()
        if mode == "justext":  # the stop-word tuple stays hashed once in both modes: only the paragraphs differ
            from justext import paragraph, utils

            paragraph.normalize_whitespace = utils.normalize_whitespace
            for owner, name, original in trafilatura_xpaths._patched:
                if owner in (ParagraphMaker, paragraph.Paragraph):
                    setattr(owner, name, original)

    modes = ["justext", "shammie"]
    run()  # warm-up
    times: dict[str, list[float]] = {m: [] for m in modes}
    results = {}
    for r in range(rounds):
        for mode in modes[r % 2:] + modes[:r % 2]:
            set_mode(mode)
            took, results[mode] = run()
            times[mode].append(took)
    trafilatura_xpaths.uninstall()
    trafilatura_xpaths.install()
    print(f"{len(trees)} pages, {sum(map(len, results['justext'])) / len(trees):.0f} paragraphs per page, "
          f"{rounds} rounds, load {os.getloadavg()[0]:.2f}")
    print("| mode | CPU ms/page (median, range) | vs justext |")
    print("|---|---|---|")
    base = statistics.median(times["justext"])
    for mode in modes:
        med = statistics.median(times[mode])
        print(f"| {mode} | {med:.2f} ({min(times[mode]):.2f}-{max(times[mode]):.2f}) | {base / med:.2f}x |")
    print("same text and class for every paragraph:", results["justext"] == results["shammie"])
    print(f"pages on which trafilatura runs justext (FineWeb's settings): {rescued[0]} of {len(pages)}")


if __name__ == "__main__":
    main()
