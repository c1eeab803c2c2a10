"""Extraction quality and speed of the crawl's two extractors, on real article pages.

The 181 pages of ../shared/data/html/article-extraction-benchmark (scrapinghub's
article-extraction-benchmark): token F1 of each extractor's text against the gold
`articleBody` (whitespace tokens, multiset overlap, as that benchmark scores), and
milliseconds per page on one core (decoding included; `--repeat` passes over the pages,
each with a fresh extractor as the crawl uses one per file; the median per page summed;
F1 from the first pass). Both extractors run exactly as the crawl runs them
(`shammie.filters.extract.make_extractor`).

    .venv/bin/python benchmarks/extractor_quality.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from shammie.filters.extract import EXTRACTORS, extractor_version, make_extractor

SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BENCH = SHARED / "html" / "article-extraction-benchmark"


def token_f1(predicted: str, gold: str) -> float:
    p, g = Counter(predicted.split()), Counter(gold.split())
    overlap = sum((p & g).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(g.values())
    return 2 * precision * recall / (precision + recall)


def pages() -> list[tuple[str, str]]:
    truth = json.loads((BENCH / "ground-truth.json").read_text())
    out = []
    for key, item in sorted(truth.items()):
        raw = gzip.decompress((BENCH / "html" / f"{key}.html.gz").read_bytes())
        out.append((raw.decode("utf-8", errors="replace"), item["articleBody"]))
    return out


def measure(name: str, corpus: list[tuple[str, str]], repeat: int) -> dict:
    # Each pass is a fresh extractor, as the crawl makes one per file: trafilatura's
    # `deduplicate` cache would otherwise remember a page from the pass before and cut it.
    times: list[list[float]] = [[] for _ in corpus]
    texts: list[str | None] = []
    for rep in range(repeat):
        extractor = make_extractor(name)
        for i, (html, _) in enumerate(corpus):
            t = time.perf_counter()
            text = extractor.extract(html)
            times[i].append(time.perf_counter() - t)
            if rep == 0:
                texts.append(text)
    seconds = [statistics.median(t) for t in times]
    f1s = [token_f1(text or "", gold) for text, (_, gold) in zip(texts, corpus)]
    return {"extractor": name, "version": extractor_version(name), "pages": len(corpus),
            "mean_f1": round(statistics.mean(f1s), 4), "median_f1": round(statistics.median(f1s), 4),
            "ms_per_page": round(1000 * sum(seconds) / len(seconds), 2),
            "empty_pages": sum(1 for f in f1s if f == 0.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not BENCH.is_dir():
        print(f"skipped: {BENCH} is absent (set SHAMMIE_SHARED_DATA)")
        return 0
    corpus = pages()
    results = [measure(name, corpus, args.repeat) for name in EXTRACTORS]
    print("| extractor | version | pages | mean token F1 | median F1 | ms/page (1 core) | empty |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['extractor']} | {r['version']} | {r['pages']} | {r['mean_f1']} | {r['median_f1']} | "
              f"{r['ms_per_page']} | {r['empty_pages']} |")
    fast, slow = results[1]["ms_per_page"], results[0]["ms_per_page"]
    print(f"resiliparse is {slow / fast:.1f}x faster per page")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "load": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
