"""trafilatura with and without filters/trafilatura_xpaths.py's install(), alternating in one process.

    .venv/bin/python benchmarks/trafilatura_speedups.py [--corpus benchmarks/_work/corpus-2000] [--rounds 6]

Pages: the distinct HTML responses of the corpus's WARC files (default: the 181 pages of
../shared/data/html/article-extraction-benchmark). Each round extracts every page, with
FineWeb's settings and a fresh dedup cache, in three modes:
  * original: trafilatura as installed;
  * xpaths: the pruning expressions evaluated in Python (filters/xpath_subset.py), the others
    with guarded regex tests, and the stop-word tuple hashed once; lxml.html's Python element lookup;
  * xpaths+lookup: what the crawl runs (`install()`, with lxml's C element lookup).
Reports the median CPU ms per page (process time) of each mode, the median time inside
trafilatura's `prune_unwanted_nodes` (where the XPath expressions run), and whether every
mode extracted the same text.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "shared", "data", "html", "article-extraction-benchmark", "html")


def load_pages(corpus: str | None) -> list[str]:
    if corpus is None:
        return [gzip.decompress(open(p, "rb").read()).decode("utf-8", "replace")
                for p in sorted(glob.glob(os.path.join(BENCH, "*.html.gz")))]
    from warcio.archiveiterator import ArchiveIterator

    pages: dict[str, None] = {}
    for path in sorted(glob.glob(os.path.join(corpus, "*.warc.gz"))):
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type == "response":
                    pages[record.content_stream().read().decode("utf-8", "replace")] = None
    return list(pages)


def pages_and_rounds(description: str, rounds: int) -> tuple[list[str], int]:
    """The pages and the number of rounds a page benchmark's command line asks for."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="a folder of .warc.gz files (default: the article benchmark's pages)")
    ap.add_argument("--rounds", type=int, default=rounds)
    args = ap.parse_args()
    pages = load_pages(args.corpus)
    if not pages:
        ap.error(f"no pages found in {args.corpus or BENCH}")  # one line, exit 2
    return pages, args.rounds


def main() -> None:
    pages, rounds = pages_and_rounds(__doc__, 6)

    import trafilatura
    from lxml import html
    from trafilatura import core, external, htmlprocessing, main_extractor, utils
    from trafilatura.deduplication import LRU_SIZE, LRUCache

    from shammie.filters import trafilatura_xpaths

    prune_seconds = [0.0]
    prune = htmlprocessing.prune_unwanted_nodes

    def timed_prune(*a, **k):
        started = time.process_time()
        try:
            return prune(*a, **k)
        finally:
            prune_seconds[0] += time.process_time() - started

    for module in (core, external, main_extractor):
        module.prune_unwanted_nodes = timed_prune

    def set_mode(mode: str) -> None:
        trafilatura_xpaths.uninstall()
        if mode != "original":
            trafilatura_xpaths.install()
        if mode == "xpaths":
            utils.HTML_PARSER.set_element_class_lookup(html.HtmlElementClassLookup())

    def run() -> tuple[float, float, list]:
        cache, prune_seconds[0] = LRUCache(maxsize=LRU_SIZE), 0.0
        started = time.process_time()
        out = [trafilatura.extract(p, favor_precision=True, include_comments=False, deduplicate=cache) for p in pages]
        return (time.process_time() - started) * 1000 / len(pages), prune_seconds[0] * 1000 / len(pages), out

    modes = ["original", "xpaths", "xpaths+lookup"]
    run()  # warm-up: imports, regex compilation
    totals = {m: [] for m in modes}
    prunes = {m: [] for m in modes}
    texts = {}
    for r in range(rounds):
        for mode in modes[r % 3:] + modes[:r % 3]:  # rotate the order each round
            set_mode(mode)
            total, pruned, texts[mode] = run()
            totals[mode].append(total)
            prunes[mode].append(pruned)
    trafilatura_xpaths.install()
    print(f"{len(pages)} pages, {rounds} rounds, load {os.getloadavg()[0]:.2f}")
    print("| mode | CPU ms/page (median, range) | prune_unwanted_nodes ms/page | vs original |")
    print("|---|---|---|---|")
    base = statistics.median(totals["original"])
    for mode in modes:
        med = statistics.median(totals[mode])
        print(f"| {mode} | {med:.2f} ({min(totals[mode]):.2f}-{max(totals[mode]):.2f}) | "
              f"{statistics.median(prunes[mode]):.2f} | {base / med:.3f}x |")
    print("same text in every mode:", texts["original"] == texts["xpaths"] == texts["xpaths+lookup"])


if __name__ == "__main__":
    main()
