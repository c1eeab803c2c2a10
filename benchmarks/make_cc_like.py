"""A Common-Crawl-like benchmark corpus: real pages in the page-length and language mix of the real crawls at hand.

    .venv/bin/python benchmarks/make_cc_like.py --out benchmarks/_work/cc-like-4000 -n 4000 -k 4 [--seed 0]

1. The target: every HTML response (HTTP 200, text/html) of the WARC files in ../shared/data/warc,
   measured as the crawl sees it: its lid.176 language (of its trafilatura text with FineWeb's
   settings, else of its visible text) and the words of that text as Gopher quality counts them
   (the language's own splitter, when it has filter settings; else split at spaces). Their joint
   histogram (length bin x language) is printed and written to OUT/histogram.json.
2. The pool: those pages, the 181 pages of ../shared/data/html/article-extraction-benchmark, and
   --short short real pages from ../shared/tools/make_short_pages.py (1-40 words of DCLM text in
   header/nav/footer boilerplate), each measured the same way. Where a cell would repeat its
   pages more than twice, built pages top it up: real text of the cell's language (DCLM pages
   for English, the Leipzig sentences of ../shared/data/lid for the others) cut to a length in
   the cell's range, in a page with header, menu, related links and footer (measured, and put
   in the cell they land in). Korean has no such text: its cells repeat the shared crawl's pages.
3. N records are drawn so that each (length bin, language) cell holds its share of the target:
   the cell's pool pages in shuffled cycles. Each record gets a unique URL (`bench=<counter>` in
   the query) and WARC-Identified-Payload-Type text/html, as Common Crawl writes it, in K
   gzipped WARC files.

Standard library, warcio and Shammie's own extractor and language model (the measurement).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared")
WORD_BINS = (0, 10, 50, 100, 200, 500, 1000, 2000)
LANGUAGES = ("en", "zh", "ko", "de", "ru", "nl", "ja", "fr", "es")  # named cells; the rest are "other"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SHARED, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def word_bin(words: int) -> str:
    lower = max(b for b in WORD_BINS if b <= words)
    upper = next((b for b in WORD_BINS if b > words), None)
    return f"{lower}-{upper - 1}" if upper else f"{lower}+"


class Measure:
    """lid.176's language and the words of trafilatura's text, as the crawl would see the page."""

    def __init__(self):
        from shammie.filters.fineweb import install_word_tokenizer_memo, make_language_filter, resolve_lid_model
        from shammie.filters.language_settings import available_languages, settings_for
        from shammie.filters.extract import make_extractor
        from shammie.filters.short_pages import CleanedTexts

        install_word_tokenizer_memo()
        self._lid = make_language_filter(None, 0.0, resolve_lid_model(None))
        self._extractor = make_extractor
        self._visible = CleanedTexts()
        self._splitters = {}
        for code in available_languages():
            try:
                self._splitters[code] = settings_for([code])[code].word_tokenizer
            except Exception:  # noqa: BLE001 - its splitter is not installed: split at spaces
                continue

    def words(self, text: str, language: str) -> int:
        from datatrove.utils.text import split_into_words

        from shammie.filters.gopher_quality import count_non_symbol_words

        if language in self._splitters and text.strip():
            return count_non_symbol_words(split_into_words(text, self._splitters[language]))
        return len(text.split())

    def __call__(self, body: bytes, content_type: str) -> tuple[int, str]:
        from datatrove.data import Document
        from trafilatura.utils import load_html

        from shammie.pipeline.warc import decode_html

        decoded = decode_html(body, content_type)
        html = decoded.text if decoded else body.decode("utf-8", "replace")
        text = self._extractor("trafilatura").extract(html) or ""  # a fresh duplicate cache per page
        sample = text
        if not sample.strip():
            tree = load_html(html)
            sample = " ".join(self._visible(tree)) if tree is not None else ""
        language = "none"
        if sample.strip():
            best, _ = self._lid.model.predict(Document(text=sample, id="x", metadata={}))
            language = best[0] if best[0] in LANGUAGES else "other"
        return self.words(text, language), language


def short_pages(n: int, seed: int) -> list:
    """`n` pages of make_short_pages.py, as make_corpus Page tuples."""
    from warcio.archiveiterator import ArchiveIterator

    corpus = _load_tool("make_corpus")
    out = tempfile.mkdtemp(prefix="short-pool-")
    subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_short_pages.py"),
                    os.path.join(SHARED, "data", "labels", "dclm-human-quality-agreement.jsonl"), out, str(n),
                    "--files", "1", "--seed", str(seed)], check=True, capture_output=True)
    pages = []
    with open(os.path.join(out, "tiny-00000.warc.gz"), "rb") as f:
        for r in ArchiveIterator(f):
            if r.rec_type == "response":
                pages.append(corpus.Page(r.rec_headers.get_header("WARC-Target-URI"), "2024-05-20T10:00:00Z",
                                         r.http_headers.get_header("Content-Type"), r.content_stream().read()))
    return pages


def texts_of(language: str) -> list[list[str]]:
    """Real text to build pages of `language` from: lists of words (English: the DCLM pages) or of
    sentences (the other languages: the Leipzig sentences of ../shared/data/lid, one list)."""
    data = os.path.join(SHARED, "data")
    if language == "en":
        with open(os.path.join(data, "labels", "dclm-human-quality-agreement.jsonl")) as f:
            return [words for words in (json.loads(line)["text"].split() for line in f) if len(words) >= 100]
    path = os.path.join(data, "lid", f"{language}.txt")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [[line.strip() for line in f if line.strip()]]


def built_page(rng: random.Random, units: list[str], words: int, language: str, site: str) -> bytes:
    """About `words` words of real text (`units`: words, or sentences) from a random place in
    `units`, in paragraphs, in a page with header, menu, related links and footer."""
    import html

    by_words = language == "en"
    no_spaces = language in ("zh", "ja")
    picked, size, start = [], 0, rng.randrange(len(units))
    for k in range(len(units)):
        unit = units[(start + k) % len(units)]
        picked.append(unit)
        size += 1 if by_words else (len(unit) * 2 // 3 if no_spaces else len(unit.split()))
        if size >= words:
            break
    per_paragraph = (lambda: rng.randint(40, 90)) if by_words else (lambda: rng.randint(2, 4))
    paragraphs, i = [], 0
    while i < len(picked):
        n = per_paragraph()
        paragraphs.append(("" if no_spaces else " ").join(picked[i:i + n]))
        i += n
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    menu = "".join(f"<li><a href='/{k}'>{w}</a></li>" for k, w in enumerate(["Start", "News", "Topics", "Archive",
                                                                            "About", "Contact"]))
    related = "".join(f"<li><a href='/r{k}'>{html.escape(' '.join(units[rng.randrange(len(units))].split()[:6]))}"
                      f"</a></li>" for k in range(3))
    return (f"<!DOCTYPE html><html lang='{language}'><head><meta charset='utf-8'><title>{site}</title>"
            f"<script>var site = '{site}';</script></head><body><header><a href='/'>{site}</a></header>"
            f"<nav><ul>{menu}</ul></nav><main><article>{body}</article>"
            f"<aside><h2>Related</h2><ul>{related}</ul></aside></main><footer>&copy; 2024 {site}"
            f" <a href='/privacy'>Privacy</a></footer></body></html>").encode("utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", "--records", type=int, default=4000)
    ap.add_argument("-k", "--files", type=int, default=4)
    ap.add_argument("--short", type=int, default=3000, help="short pages added to the pool")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from pathlib import Path
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    corpus = _load_tool("make_corpus")
    data = Path(SHARED) / "data"
    measure = Measure()
    crawled = []
    for path in sorted((data / "warc").iterdir()):
        if not corpus.gzip_intact(path) or not path.is_file():
            continue
        try:
            crawled += corpus.read_html_responses(path)
        except Exception:  # noqa: BLE001 - as make_corpus: a file warcio cannot read is left out
            continue
    crawled = list({p.body: p for p in crawled}.values())  # byte-identical payloads once, as make_corpus
    target = collections.Counter()
    pool: dict[tuple[str, str], list] = collections.defaultdict(list)
    for page in crawled:
        words, language = measure(page.body, page.ctype)
        target[(word_bin(words), language)] += 1
        pool[(word_bin(words), language)].append(page)
    extra = [p for p in corpus.collect_pool(data) if p.body not in {c.body for c in crawled}]
    extra += short_pages(args.short, args.seed)
    for page in extra:
        words, language = measure(page.body, page.ctype)
        pool[(word_bin(words), language)].append(page)

    total = sum(target.values())
    counts = {cell: args.records * n // total for cell, n in target.items()}
    # top up the cells that would repeat their pages more than twice with built pages
    rng = random.Random(args.seed)
    sources = {}
    built = 0
    for (bin_name, language), n in sorted(counts.items()):
        missing = (n + 1) // 2 - len(pool[(bin_name, language)])
        if missing <= 0 or language in ("other", "none"):
            continue
        if language not in sources:
            sources[language] = texts_of(language)
        if not sources[language]:
            continue
        low = int(bin_name.rstrip("+").split("-")[0])
        high = int(bin_name.split("-")[1]) if "-" in bin_name else 2 * low
        for k in range(min(missing * 2, 1500)):
            text = rng.choice(sources[language])
            site = f"{language}-site{rng.randrange(100000)}.example.org"
            body = built_page(rng, text, rng.randint(max(low, 1), max(high, 1)), language, site)
            page = corpus.Page(f"https://{site}/page/{k}", "2024-05-20T10:00:00Z", "text/html; charset=utf-8", body)
            words, measured = measure(body, page.ctype)
            pool[(word_bin(words), measured)].append(page)
            built += 1
    for cell, _ in sorted(target.items(), key=lambda kv: -(args.records * kv[1] / total - counts[kv[0]]))[
            :args.records - sum(counts.values())]:
        counts[cell] += 1  # largest remainders: the counts add up to N
    records = []
    for cell, n in sorted(counts.items()):
        pages = pool[cell][:]
        order = []
        while len(order) < n:
            rng.shuffle(pages)
            order += pages
        records += [(cell, p) for p in order[:n]]
    rng.shuffle(records)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("cc-like-*.warc.gz"):
        old.unlink()
    bounds = [round(k * len(records) / args.files) for k in range(args.files + 1)]
    for k in range(args.files):
        with open(out / f"cc-like-{k:05d}.warc.gz", "wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            for counter in range(bounds[k], bounds[k + 1]):
                _, page = records[counter]
                http = StatusAndHeaders("200 OK", [("Content-Type", page.ctype or "text/html"),
                                                   ("Content-Length", str(len(page.body)))], protocol="HTTP/1.1")
                headers = {"WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>",
                           "WARC-Date": page.date, "WARC-Identified-Payload-Type": "text/html"}
                writer.write_record(writer.create_warc_record(corpus.bench_uri(page.url, counter), "response",
                                                              payload=io.BytesIO(page.body), http_headers=http,
                                                              warc_headers_dict=headers))

    def table(counter):
        return {f"{b} words, {lang}": n for (b, lang), n in sorted(counter.items(), key=lambda kv: (
            WORD_BINS.index(int(kv[0][0].rstrip("+").split("-")[0])), kv[0][1]))}

    drawn = collections.Counter(cell for cell, _ in records)
    summary = {
        "target_pages": total,
        "target": table(target),
        "target_by_length": dict(collections.Counter(b for (b, _), n in target.items() for _ in range(n))),
        "target_by_language": dict(collections.Counter(lang for (_, lang), n in target.items() for _ in range(n))),
        "records": len(records), "files": args.files, "drawn": table(drawn),
        "distinct_pages_per_cell": {f"{b} words, {lang}": len(set(id(p) for c, p in records if c == (b, lang)))
                                    for (b, lang) in sorted(drawn)},
        "pool_pages": sum(len(v) for v in pool.values()), "built_pages": built, "seed": args.seed,
    }
    (out / "histogram.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
