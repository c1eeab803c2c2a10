"""Benchmark corpora for dedup: real extracted pages with planted near-duplicates of known
Jaccard, and large synthetic corpora for the memory-scaling curve.

Real pages: every text/html 200 response readable by warcio under shared/data/warc, plus
the article-extraction-benchmark HTML pages, extracted with trafilatura (>= 50 words,
exact repeats dropped). A planted copy replaces a fraction of an original's words with
words of the same page, so its true Jaccard is computed exactly (sets of normalised word
5-grams, no hashing) rather than assumed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections import defaultdict
from pathlib import Path

import pyarrow as pa

from shammie.dedup.signatures import normalise_words
from shammie.pipeline import documents, jobdir

SHARED = Path(os.environ.get("SHAMMIE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _html_pages():
    from warcio.archiveiterator import ArchiveIterator

    for path in sorted((SHARED / "warc").glob("*")):
        try:
            with open(path, "rb") as f:
                for rec in ArchiveIterator(f, arc2warc=True):
                    if rec.rec_type != "response" or not rec.http_headers:
                        continue
                    if rec.http_headers.get_statuscode() != "200":
                        continue
                    if "html" not in (rec.http_headers.get_header("Content-Type") or ""):
                        continue
                    yield rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read()
        except Exception:  # truncated edge-case files: keep what was read
            continue
    for path in sorted((SHARED / "html").rglob("*.html.gz")):
        yield path.name, gzip.decompress(path.read_bytes())


def real_texts(cache: str = "/tmp/shammie-dedup-bench/real_texts.json") -> list[str]:
    if os.path.exists(cache):
        return json.load(open(cache))
    import trafilatura

    seen, texts = set(), []
    for _, html in _html_pages():
        try:
            text = trafilatura.extract(html.decode("utf-8", "replace"))
        except Exception:
            text = None
        if not text or len(text.split()) < 50 or text in seen:
            continue
        seen.add(text)
        texts.append(text)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    json.dump(texts, open(cache, "w"))
    return texts


def alter_words(text: str, fraction: float, r: random.Random) -> str:
    """Replace `fraction` of the words by other words of the same text."""
    words = text.split()
    for i in r.sample(range(len(words)), max(1, round(fraction * len(words)))):
        words[i] = r.choice(words)
    return " ".join(words)


def shingle_set(text: str, n: int = 5) -> set[bytes]:
    w = normalise_words(text)
    return {b" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def exact_similar_pairs(texts: list[str], min_jaccard: float = 0.5) -> dict[tuple[int, int], float]:
    """True Jaccard of every pair sharing enough 5-grams to reach `min_jaccard` (inverted index)."""
    sets = [shingle_set(t) for t in texts]
    index = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            index[sh].append(i)
    shared = defaultdict(int)
    for docs in index.values():
        if 1 < len(docs) < 200:
            for a in range(len(docs)):
                for b in range(a + 1, len(docs)):
                    shared[(docs[a], docs[b])] += 1
    out = {}
    for (a, b), inter in shared.items():
        union = len(sets[a]) + len(sets[b]) - inter
        if union and inter / union >= min_jaccard:
            out[(a, b)] = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
    return out


# Fractions of words altered in planted copies: 5-gram Jaccard from ~0.97 down to ~0.7.
ALTER_FRACTIONS = [0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04]


def planted_real_corpus(job: str, copies_per_page: int = 3, seed: int = 0, files: int = 4) -> dict:
    """Originals + planted copies written as a crawl output; returns ids, texts and truth."""
    r = random.Random(seed)
    base = real_texts()
    rows = [(f"<urn:orig:{i:05d}>", t) for i, t in enumerate(base)]
    for i, t in enumerate(base):
        for c in range(copies_per_page):
            rows.append((f"<urn:copy:{i:05d}:{c}>", alter_words(t, r.choice(ALTER_FRACTIONS), r)))
    r.shuffle(rows)
    write_job(job, rows, files=files, dump="CC-MAIN-2024-22")
    texts = [t for _, t in rows]
    return {"ids": [i for i, _ in rows], "texts": texts, "pairs": exact_similar_pairs(texts)}


def write_job(job: str, rows: list[tuple[str, str]], files: int = 4, dump: str = "CC-MAIN-2024-22") -> None:
    per = (len(rows) + files - 1) // files
    for k in range(files):
        part = rows[k * per:(k + 1) * per]
        n = len(part)
        table = pa.table({
            "id": [p[0] for p in part], "text": [p[1] for p in part], "url": [None] * n, "dump": [dump] * n,
            "date": [None] * n, "language": ["en"] * n, "language_score": [1.0] * n,
            "warc_file": [f"bench-{k}.warc.gz"] * n, "warc_offset": list(range(n)),
        }, schema=documents.DOCUMENT_SCHEMA)
        documents.write_table(table, os.path.join(job, "documents", f"{k:05d}.parquet"))
    jobdir.mark_complete(job, "documents")


def synthetic_job(job: str, n_docs: int, words: int = 100, dup_fraction: float = 0.1, files: int = 16,
                  seed: int = 0) -> None:
    """n_docs random-word documents, `dup_fraction` of them near-copies (2% words changed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=int(k))) for k in rng.integers(3, 10, size=50_000)]
    vocab = np.array(vocab, dtype=object)
    n_orig = int(n_docs * (1 - dup_fraction))
    per = (n_docs + files - 1) // files
    ids = rng.permutation(n_docs)
    for k in range(files):
        rows = []
        for j in ids[k * per:(k + 1) * per]:
            j = int(j)
            src = j if j < n_orig else j % n_orig
            w = vocab[np.random.default_rng(src).integers(0, len(vocab), size=words)]
            if j >= n_orig:
                w = w.copy()
                w[rng.integers(0, words, size=max(1, words // 50))] = "zzqx"
            rows.append((f"<urn:syn:{j:08d}>", " ".join(w)))
        n = len(rows)
        table = pa.table({
            "id": [p[0] for p in rows], "text": [p[1] for p in rows], "url": [None] * n, "dump": ["SYN"] * n,
            "date": [None] * n, "language": ["en"] * n, "language_score": [1.0] * n,
            "warc_file": ["syn"] * n, "warc_offset": list(range(n)),
        }, schema=documents.DOCUMENT_SCHEMA)
        documents.write_table(table, os.path.join(job, "documents", f"{k:05d}.parquet"))
    jobdir.mark_complete(job, "documents")
