"""Benchmark decontamination: remove documents that share a word n-gram with a benchmark item
(<most downstream document folder> -> decontaminated/).

An item is one benchmark example's text: a line of a `.txt` file, or one column
(`--text-column`, default "text") of a row of a `.jsonl` or `.parquet` file. Items and
documents are normalised exactly as dedup normalises them (`normalise_words`: FineWeb's
simplify_text, then the words: split on every Unicode space, or by the document's language's
word splitter for languages written without spaces, as datatrove's n-gram decontamination
splits them) and cut into word n-grams (default 13, the GPT-3 paper's size) hashed with
dedup's `shingle_hashes`. A document is split by the splitter of its own `language`; an item
has no language, so its n-grams are indexed as split on spaces and as split by each word
splitter the job's languages use (the crawl's kept languages), and a Chinese page quoting a
Chinese item matches it. A document that contains any n-gram of any item is removed; case,
punctuation, digits and spacing do not matter, word order does.

Items shorter than n words have no n-gram and are skipped and counted
(`items_too_short` per benchmark file). Matching such an item whole would remove every
document that contains a short common phrase ("which of the following is true"), and
datatrove does the same: its `ngrams()` yields nothing for a text shorter than n, so
its index silently leaves these items out. Lower `--ngram` to catch short items.

Why hand-written: datatrove's `NGramsDecontIndexer` builds its index from lighteval tasks
it downloads from the Hugging Face hub (or from documents carrying lighteval's
query/label metadata), not from the files a team keeps its test sets in, and runs
datatrove's own executor; Dolma's Bloom-filter decontamination is part of its Rust
`dolma dedupe` tool. Here the index is a sorted numpy uint64 array of n-gram hashes
(8 bytes per n-gram, plus 4 bytes for the item each belongs to, used for the statistics,
plus a 4-byte-per-n-gram presence bitmap that rules out most probes before the search),
built once by the driver into the output folder's `_work/`, memory-mapped by every
worker and probed with `np.searchsorted`: a match is exact (no Bloom-filter false
positives, only 64-bit hash collisions: ~N*M/2^64 for N benchmark and M document
n-grams) and the workers of a host share one copy in the page cache, so tens of
millions of benchmark n-grams cost hundreds of MB on disk, not per worker. The
driver needs ~24 bytes per n-gram while it sorts them.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from shammie.dedup.signatures import normalise_words, shingle_hashes, word_settings
from shammie.filters.words import dedup_splitter, dedup_splitters, dedup_word_settings, load_dedup_splitters
from shammie.pipeline import documents, jobdir, storage
from shammie.pipeline.errors import InputError
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, Phase, Results, Task, read_documents

WORK = "_work"
# In the folder's bookkeeping folder (JOB/_meta/decontaminated/): decontaminated/ must hold documents
# only (polars, `datasets` and duckdb's `**/*.parquet` read the whole folder).
REMOVED = "removed/removed.parquet"
TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES


@dataclass(frozen=True)
class DecontaminateOptions:
    job: str = option(help="job directory with a complete document folder", kind="output", positional=True,
                      metavar="DIR", yaml=False)
    against: tuple[str, ...] = option(help="benchmark files: .jsonl or .parquet (one item per row, text in "
                                      "--text-column) or .txt (one item per line); local, s3:// or globs",
                                      kind="inputs", metavar="FILE")
    text_column: str = option("text", help="the one column holding an item's text in .jsonl/.parquet files "
                              "(.txt files: one item per line)")
    ngram: int = option(13, help="words per n-gram; a document sharing one n-gram with an item is removed "
                        "(items shorter than this are skipped and counted)", minimum=5)
    input_stage: str | None = option(None, help="document folder to read (default: the most downstream complete "
                                     "one before decontaminated/)", metavar="STAGE")


# ---------------------------------------------------------------- benchmark files


def benchmark_files(patterns: tuple[str, ...]) -> list[str]:
    """The benchmark files named by paths, URLs and globs, in the order given; InputError for what is not one."""
    files: list[str] = []
    for pattern in patterns:
        if pattern.startswith("cc:"):
            raise InputError(f"--against {pattern}: a Common Crawl snapshot is not a benchmark file")
        if any(c in pattern for c in "*?["):
            if storage.is_remote(pattern):
                fs, _ = storage.get_fs(pattern)
                protocol = pattern.split("://", 1)[0]
                matched = sorted(f"{protocol}://{p}" for p in fs.glob(pattern))
            else:
                matched = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not matched:
                raise InputError(f"--against {pattern}: matches no file")
        else:
            matched = [pattern]
        for url in matched:
            if not url.lower().endswith(SUPPORTED):
                raise InputError(f"--against {url}: not a benchmark file this stage reads "
                                 f"(expected {', '.join(SUPPORTED)})")
            if storage.file_fingerprint(url, checksum=False) is None:
                raise InputError(f"--against {url}: does not exist")
            if url not in files:
                files.append(url)
    return files


def read_items(url: str, text_column: str) -> Iterator[str | None]:
    """Every item text of one benchmark file, in file order (None for a JSON null); InputError naming
    the file (and line) for what cannot be read as one."""
    try:
        yield from _read_items(url, text_column)
    except UnicodeDecodeError as e:
        raise InputError(f"{url} is not UTF-8 text ({e})") from None
    except InputError:
        raise
    except Exception as e:
        import pyarrow as pa

        if isinstance(e, (pa.ArrowException, EOFError, OSError)):
            raise InputError(f"{url} cannot be read as a benchmark file ({type(e).__name__}: {e})") from None
        raise


def _read_items(url: str, text_column: str) -> Iterator[str | None]:
    lower = url.lower()
    fs, path = storage.get_fs(url)
    if lower.endswith(PARQUET_SUFFIXES):
        import pyarrow as pa
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            if text_column not in parquet.schema_arrow.names:
                raise InputError(f"{url} has no column {text_column!r} (columns: "
                                 f"{', '.join(parquet.schema_arrow.names)}); name the item text with --text-column")
            kind = parquet.schema_arrow.field(text_column).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise InputError(f"{url}: column {text_column!r} holds {kind}, not text")
            for batch in parquet.iter_batches(columns=[text_column], batch_size=8192):
                yield from batch.column(0).to_pylist()
        return
    compression = "gzip" if lower.endswith(".gz") else None
    with fs.open(path, "rt", encoding="utf-8", compression=compression) as f:
        if lower.endswith(TEXT_SUFFIXES):
            for line in f:
                if line.strip():
                    yield line
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise InputError(f"{url}:{number}: not a JSON line ({e})") from None
            if not isinstance(row, dict) or text_column not in row:
                keys = ", ".join(map(str, row)) if isinstance(row, dict) else type(row).__name__
                raise InputError(f"{url}:{number}: no {text_column!r} key (has: {keys}); name the item text with "
                                 "--text-column")
            value = row[text_column]
            if value is not None and not isinstance(value, str):
                raise InputError(f"{url}:{number}: {text_column!r} is {type(value).__name__}, not text")
            yield value


def item_ngrams(text: str | None, ngram: int, splitters: tuple = ()) -> np.ndarray:
    """The distinct n-gram hashes of one item, its words split on spaces and by each of `splitters`
    (empty when it has fewer than `ngram` words every way)."""
    parts = [shingle_hashes(normalise_words(text or "", split), ngram) for split in (None, *splitters)]
    return np.unique(np.concatenate(parts))


def build_index(files: list[str], text_column: str, ngram: int,
                splitters: tuple = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(hashes sorted ascending, item number of each, first item number of each file, stats per file).

    A hash shared by several items appears once per item, so every item it belongs to
    is found. Item numbers run over all files in order; within a file, item k is the
    k-th item (row, or non-empty line) of that file, counted from 0."""
    hash_parts: list[np.ndarray] = []
    item_parts: list[np.ndarray] = []
    file_starts = []
    stats: dict[str, dict] = {}
    next_item = 0
    for url in files:
        file_starts.append(next_item)
        items = too_short = ngrams = 0
        for text in read_items(url, text_column):
            hashes = item_ngrams(text, ngram, splitters)
            if hashes.size:
                hash_parts.append(hashes)
                item_parts.append(np.full(hashes.size, next_item + items, dtype=np.uint32))
                ngrams += hashes.size
            else:
                too_short += 1
            items += 1
        next_item += items
        stats[url] = {"items": items, "items_too_short": too_short, "ngrams": ngrams}
    hashes = np.concatenate(hash_parts) if hash_parts else np.empty(0, np.uint64)
    owners = np.concatenate(item_parts) if item_parts else np.empty(0, np.uint32)
    order = np.lexsort((owners, hashes))
    return hashes[order], owners[order], np.array(file_starts, dtype=np.int64), stats


def _save(url: str, array: np.ndarray) -> None:
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        np.save(f, array)


def write_index(folder: str, tag: str, hashes: np.ndarray, owners: np.ndarray, file_starts: np.ndarray) -> dict[str, str]:
    """Save the index arrays (and the presence filter of the hashes) as .npy files; return their URLs."""
    urls = {}
    for key, array in (("hashes", hashes), ("owners", owners), ("file_starts", file_starts),
                       ("bitmap", presence_filter(hashes))):
        urls[key] = storage.join(folder, f"{key}-{tag}.npy")
        _save(urls[key], array)
    return urls


def _load(url: str) -> np.ndarray:
    if not storage.is_remote(url):
        # Memory-mapped: every worker on a host shares one copy in the page cache. np.asarray drops
        # the np.memmap subclass (same memory): its per-slice bookkeeping tripled the probe's cost.
        return np.asarray(np.load(storage.strip_file_scheme(url), mmap_mode="r"))
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return np.load(f)


# ---------------------------------------------------------------- matching


# Bits of the presence filter per benchmark n-gram: ~3% of a clean document's n-grams pass it
# (1 - e^(-1/32)) and go on to the exact search.
FILTER_BITS_PER_NGRAM = 32


def presence_filter(hashes: np.ndarray) -> np.ndarray:
    """A bitmap with one bit set per distinct top-k-bit prefix of the sorted `hashes` (a Bloom filter
    with one hash function; 2^k >= 32 bits per n-gram, so 4 bytes per n-gram).

    Why: probing a document's ~700 n-grams with np.searchsorted in a 1M-hash array costs
    ~150 us (20 cache-missing steps per probe); one bit lookup per n-gram rules out ~97%
    of them first and the whole probe takes ~40 us (measured, docs/benchmarks/decontaminate.md)."""
    bits = max(16, int(np.ceil(np.log2(max(1, hashes.size) * FILTER_BITS_PER_NGRAM))))
    bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
    if hashes.size:
        slots = hashes >> np.uint64(64 - bits)  # sorted, since the hashes are
        byte = slots >> np.uint64(3)
        mask = np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))
        firsts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        bitmap[byte[firsts].astype(np.int64)] = np.bitwise_or.reduceat(mask, firsts)
    return bitmap


class NgramIndex:
    """The benchmark n-gram hashes of all files, probed one document at a time.

    `hashes` is sorted; `owners[i]` is the item `hashes[i]` belongs to; `file_starts[f]` is the
    first item number of benchmark file f; `bitmap` is `presence_filter(hashes)`."""

    def __init__(self, hashes: np.ndarray, owners: np.ndarray, file_starts: np.ndarray, ngram: int,
                 bitmap: np.ndarray | None = None):
        self.hashes, self.owners, self.file_starts, self.ngram = hashes, owners, file_starts, ngram
        self.bitmap = presence_filter(hashes) if bitmap is None else bitmap
        self.shift = np.uint64(64 - int(np.log2(self.bitmap.size * 8)))

    def matched_items(self, text: str | None, splitter=None) -> np.ndarray:
        """Distinct item numbers that share at least one n-gram with `text` (empty: the document is clean);
        `splitter`: the word splitter of the document's language (None: split on spaces)."""
        if not self.hashes.size:
            return np.empty(0, np.uint32)
        return self.items_of_ngrams(shingle_hashes(normalise_words(text or "", splitter), self.ngram))

    def items_of_ngrams(self, doc: np.ndarray) -> np.ndarray:
        """Distinct item numbers owning any of the n-gram hashes `doc` (one document's)."""
        if not doc.size or not self.hashes.size:
            return np.empty(0, np.uint32)
        # Vectorised over all the document's n-grams: the presence filter first, then the exact
        # search for the few that pass it. A position past the end is clipped to the last hash,
        # which then does not equal the probe.
        slots = doc >> self.shift
        candidates = doc[(self.bitmap[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)) & 1 == 1]
        if not candidates.size:
            return np.empty(0, np.uint32)
        pos = np.minimum(np.searchsorted(self.hashes, candidates), self.hashes.size - 1)
        found = np.unique(candidates[self.hashes[pos] == candidates])
        if not found.size:
            return np.empty(0, np.uint32)
        lo = np.searchsorted(self.hashes, found, side="left")
        hi = np.searchsorted(self.hashes, found, side="right")
        return np.unique(np.concatenate([self.owners[a:b] for a, b in zip(lo, hi)]))

    def file_of(self, items: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.file_starts, items, side="right") - 1


class DecontaminateStage(DocumentStage):
    """Remove documents sharing a word n-gram with a benchmark item (-> decontaminated/)."""

    name = "decontaminate"
    output = jobdir.DECONTAMINATED
    Options = DecontaminateOptions

    work = WORK

    def __init__(self, job: str, options: Any = None):
        super().__init__(job, options)
        self._files: list[str] | None = None
        self._fingerprints: dict[str, Any] | None = None
        # the index resolve_inputs built (hashes, owners, file_starts, per-file stats): driver only, until written
        self._built: tuple[np.ndarray, np.ndarray, np.ndarray, dict] | None = None
        self._index: tuple[tuple, NgramIndex] | None = None  # worker only: (its files, the index loaded from them)
        self._item_languages: list[str] | None = None

    def __getstate__(self) -> dict:
        # The copy sent to each worker loads the index from disk; it never carries the arrays.
        return {**self.__dict__, "_built": None, "_index": None}

    # ------------------------------------------------------------ driver

    def files(self) -> list[str]:
        if self._files is None:
            self._files = benchmark_files(self.options.against)
        return self._files

    def item_languages(self) -> list[str]:
        """The languages whose word splitter items are also split with: those among the crawl's kept pages
        (stats.json) that split by their tokenizer. A job without a crawl section (documents made by other
        tools) has its input files' `language` column read instead (one column, by the driver)."""
        if self._item_languages is None:
            splitting = dedup_word_settings()
            kept = (jobdir.read_stats(self.job).get("crawl") or {}).get("languages")
            present = kept if isinstance(kept, dict) else self._languages_in_input()
            self._item_languages = sorted(c for c in present if c in splitting)
        return self._item_languages

    def _languages_in_input(self) -> set[str]:
        import pyarrow.parquet as pq

        found: set[str] = set()
        for f in super().resolve_inputs():
            fs, path = storage.get_fs(f.url)
            with fs.open(path, "rb") as fh:
                parquet = pq.ParquetFile(fh)
                if "language" in parquet.schema_arrow.names:
                    found.update(x for x in parquet.read(columns=["language"]).column(0).unique().to_pylist() if x)
        return found

    def settings(self) -> dict[str, Any]:
        # The benchmark files' content is part of what the output is made from: a changed
        # file is refused like a changed setting. Computed once in the driver; the copy of
        # the stage each worker receives carries it (workers key their set-up copy by settings).
        if self._fingerprints is None:
            self._fingerprints = {url: storage.file_fingerprint(url) for url in self.files()}
        # One key per file, so a refusal names the file that changed.
        return {**super().settings(), "against": list(self.files()), "words": word_settings(),
                "item_languages": self.item_languages(),
                **{f"against_file:{url}": fingerprint for url, fingerprint in self._fingerprints.items()}}

    def resolve_inputs(self):
        # The whole index is built here, before the runner records or writes anything: a bad
        # line anywhere in a benchmark file, or a set with no item long enough, is refused
        # before any work and leaves no output folder behind.
        inputs = super().resolve_inputs()
        files = self.files()
        splitters = tuple(dedup_splitter(code) for code in self.item_languages())
        built = build_index(files, self.options.text_column, self.options.ngram, splitters)
        if not built[0].size:
            raise InputError(f"the benchmark file(s) hold no item of {self.options.ngram} words or more "
                             f"({', '.join(files)}); nothing to match. Lower --ngram for short items")
        self._built = built
        return inputs

    def phases(self, ctx) -> Iterator[Phase]:
        """One phase over the input files; before it the driver writes the index the tasks load
        (memory-mapped), after it the list of removed documents."""
        if self._built is None:
            self.resolve_inputs()
        hashes, owners, file_starts, loaded = self._built
        self._built = None
        # Named by the settings (which fingerprint the benchmark files): equal name, equal content,
        # so a worker that kept an index from an earlier run of the same settings may reuse it.
        digest = hashlib.sha256(json.dumps(self.settings(), sort_keys=True, default=str).encode()).hexdigest()[:12]
        index_urls = write_index(ctx.book(WORK), digest, hashes, owners, file_starts)
        index = {"index_ngrams": int(hashes.size), "index_distinct_ngrams": int(np.count_nonzero(np.diff(hashes)) + 1),
                 "loaded": loaded}
        del hashes, owners
        yield Phase(self.name, plan=lambda done: [Task(t.name, {**t.payload, "index": index_urls}, t.outputs)
                                                  for t in ctx.tasks],
                    summary=lambda results: {**index, "removed": self._write_removed(ctx.books, results)})

    def _write_removed(self, books: str, results: dict[str, dict]) -> int:
        """`removed/removed.parquet` (in JOB/_meta/decontaminated/): every removed document's id, its input
        file, and the items it matched."""
        import pyarrow as pa

        rows = [{"id": doc_id, "input_file": f"{task}.parquet",
                 "matches": [{"benchmark": b, "item": int(i)} for b, i in matches]}
                for task, r in sorted(results.items()) for doc_id, matches in r.get("removed_ids", [])]
        schema = pa.schema([("id", pa.string()), ("input_file", pa.string()),
                            ("matches", pa.list_(pa.struct([("benchmark", pa.string()), ("item", pa.int64())])))])
        documents.write_table(pa.Table.from_pylist(rows, schema=schema), storage.join(books, REMOVED))
        return len(rows)

    # ------------------------------------------------------------ workers

    def index(self, urls: dict[str, str]) -> tuple[NgramIndex, float]:
        """The index the driver wrote at `urls`, loaded once per worker (memory-mapped), and the CPU
        seconds the load took this time (a set-up cost, 0 once loaded)."""
        key = tuple(sorted(urls.items()))
        if self._index is not None and self._index[0] == key:
            return self._index[1], 0.0
        start = time.process_time()
        index = NgramIndex(*(_load(urls[k]) for k in ("hashes", "owners", "file_starts")), self.options.ngram,
                           bitmap=_load(urls["bitmap"]))
        self._index = (key, index)
        return index, time.process_time() - start

    def run_task(self, payload: dict, out: str) -> dict[str, Any]:
        index, setup = self.index(payload["index"])
        files = self.files()
        table = read_documents(payload["input"])
        ids = table["id"].to_pylist()
        keep = np.ones(table.num_rows, dtype=bool)
        removed_ids = []
        removed_by_file: dict[int, int] = defaultdict(int)
        items_by_file: dict[int, set[int]] = defaultdict(set)
        languages = table["language"].to_pylist() if "language" in table.column_names else [None] * table.num_rows
        load_dedup_splitters(set(languages))  # once per worker and language (jieba, SudachiPy, ... load seconds)
        splitters = dedup_splitters(languages)
        for row, text in enumerate(table["text"].to_pylist()):
            items = index.matched_items(text, splitters[row])
            if not items.size:
                continue
            keep[row] = False
            owners = index.file_of(items)
            matches = []
            for item, f in zip(items.tolist(), owners.tolist()):
                local = item - int(index.file_starts[f])
                items_by_file[f].add(local)
                matches.append((files[f], local))
            for f in set(owners.tolist()):
                removed_by_file[f] += 1
            removed_ids.append((ids[row], matches))
        documents.write_table(table.filter(keep), payload["output"])
        return {"documents": int(keep.sum()), "removed": len(removed_ids), "removed_ids": removed_ids,
                "setup_cpu_seconds": setup,
                "benchmarks": {files[f]: {"documents_removed": removed_by_file[f],
                                          "items_matched": sorted(items_by_file[f])}
                               for f in sorted(items_by_file)}}

    # ------------------------------------------------------------ stats

    def summarize(self, results: Results) -> dict[str, Any]:
        kept = sum(r["documents"] for r in results.values())
        removed = sum(r["removed"] for r in results.values())
        index = results.phases[self.name]
        per_file = {}
        for url in self.files():
            found = [r.get("benchmarks", {}).get(url) for r in results.values()]
            found = [f for f in found if f]
            loaded = index["loaded"].get(url, {})
            per_file[url] = {
                "documents_removed": sum(f["documents_removed"] for f in found),
                "items_matched": len(set().union(*(f["items_matched"] for f in found))),
                "items": loaded.get("items"), "items_too_short": loaded.get("items_too_short"),
                "ngrams": loaded.get("ngrams")}
        return {"documents": kept, "documents_in": kept + removed, "removed": removed, "kept": kept,
                "ngram": self.options.ngram, "text_column": self.options.text_column,
                "index_ngrams": index["index_ngrams"], "index_distinct_ngrams": index["index_distinct_ngrams"],
                "benchmarks": per_file, "removed_list": f"{jobdir.META}/{self.output}/{REMOVED}",
                "item_languages": self.item_languages(),
                "input_stage": self.input_stage(), "files": len(results)}

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """Its row of the job's filter funnel (report and dataset card)."""
        return [("after decontamination", int(section.get("kept", section.get("documents", 0))))]

    def describe(self, section: dict) -> str:
        lines = [f"decontaminate ({section['ngram']}-grams): {section['documents_in']} documents in, "
                 f"{section['removed']} removed, {section['kept']} kept -> {self.output}/"]
        for url, s in section["benchmarks"].items():
            lines.append(f"  {os.path.basename(url)}: {s['documents_removed']} documents removed, "
                         f"{s['items_matched']} of {s['items']} items matched"
                         + (f" ({s['items_too_short']} shorter than {section['ngram']} words, skipped)"
                            if s.get("items_too_short") else ""))
        return "\n".join(lines)
