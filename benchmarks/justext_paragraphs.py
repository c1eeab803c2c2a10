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
out) and whether both gave every paragraph the same text and class. justext runs on about
one article page in five in the crawl (on pages whose own extraction is short or unclean),
so its share of a crawl is about a fifth of these per-page numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from copy import copy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trafilatura_speedups import load_pages  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="a folder of .warc.gz files (default: the article benchmark's pages)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from justext.core import ParagraphMaker, classify_paragraphs, revise_paragraph_classification
    from trafilatura import external
    from trafilatura.baseline import basic_cleaning
    from trafilatura.utils import load_html

    from shammie.filters import trafilatura_xpaths

    pages = load_pages(args.corpus)
    if not pages:
        raise SystemExit("no pages found")
    trafilatura_xpaths.install()
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
    for r in range(args.rounds):
        for mode in modes[r % 2:] + modes[:r % 2]:
            set_mode(mode)
            took, results[mode] = run()
            times[mode].append(took)
    trafilatura_xpaths.uninstall()
    trafilatura_xpaths.install()
    print(f"{len(trees)} pages, {sum(map(len, results['justext'])) / len(trees):.0f} paragraphs per page, "
          f"{args.rounds} rounds, load {os.getloadavg()[0]:.2f}")
    print("| mode | CPU ms/page (median, range) | vs justext |")
    print("|---|---|---|")
    base = statistics.median(times["justext"])
    for mode in modes:
        med = statistics.median(times[mode])
        print(f"| {mode} | {med:.2f} ({min(times[mode]):.2f}-{max(times[mode]):.2f}) | {base / med:.2f}x |")
    print("same text and class for every paragraph:", results["justext"] == results["shammie"])


if __name__ == "__main__":
    main()
