"""Small synthetic inputs for tests and benchmarks of the shard store (no network, no real data).

`synthetic_texts` gives document-like text (a Zipf-distributed made-up vocabulary,
punctuation, digits, newlines, some non-ASCII); `write_job` lays it out as a job
directory stage with DOCUMENT_SCHEMA plus optional score columns; `write_token_store`
publishes a store straight from token arrays (no Ray), for reader tests and benchmarks.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from shammie.mixing import store_format as fmt
from shammie.pipeline import jobdir, storage
from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "el", "an", "por", "qu", "zé", "ñu", "öst", "ly"]
_SITES = ["example.com", "news.bbc.co.uk", "blog.example.org", "foo.github.io", "wiki.example.de",
          "shop.example.co.jp", "school.edu", "random-site.net"]
_LANGS = ["en", "de", "fr", "es"]


def _vocabulary(rng: random.Random, size: int = 2000) -> list[str]:
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def synthetic_texts(n: int, seed: int = 0, mean_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    vocab = _vocabulary(random.Random(1234))
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    texts = []
    for _ in range(n):
        n_words = max(1, int(rng.expovariate(1.0 / mean_words)))
        words = rng.choices(vocab, weights=weights, k=n_words)
        out = []
        for i, w in enumerate(words):
            out.append(w)
            r = rng.random()
            if r < 0.06:
                out.append(". " if rng.random() < 0.8 else ".\n")
            elif r < 0.08:
                out.append(f" {rng.randint(0, 9999)} ")
            elif r < 0.09:
                out.append("\n\n")
            elif i + 1 < len(words):
                out.append(" ")
        texts.append("".join(out))
    return texts


def synthetic_documents(n: int, seed: int = 0, *, scores: bool = True, mean_words: int = 120,
                        prefix: str = "doc") -> pa.Table:
    """A DOCUMENT_SCHEMA table (+ edu_score/edu_int_score when `scores`)."""
    rng = random.Random(seed + 1)
    texts = synthetic_texts(n, seed, mean_words)
    rows: dict[str, list[Any]] = {name: [] for name in DOCUMENT_SCHEMA.names}
    for i, text in enumerate(texts):
        site = _SITES[rng.randrange(len(_SITES))]
        rows["id"].append(f"<urn:uuid:{prefix}-{seed}-{i}>")
        rows["text"].append(text)
        rows["url"].append(f"https://{site}/page/{i}")
        rows["dump"].append(rng.choice(["CC-MAIN-2024-10", "CC-MAIN-2024-22"]))
        rows["date"].append("2024-05-01T00:00:00Z")
        rows["language"].append(rng.choice(_LANGS))
        rows["language_score"].append(round(rng.uniform(0.65, 1.0), 3))
        rows["warc_file"].append(f"{prefix}-{seed}.warc.gz")
        rows["warc_offset"].append(i * 1000)
    table = pa.Table.from_pydict(rows, schema=DOCUMENT_SCHEMA)
    if scores:
        edu = [round(rng.uniform(0.0, 5.0), 3) for _ in range(n)]
        table = table.append_column("edu_score", pa.array(edu, pa.float64()))
        table = table.append_column("edu_int_score", pa.array([int(round(s)) for s in edu], pa.int64()))
    return table


def write_job(job: str, files: Sequence[pa.Table], stage: str = "scored") -> list[str]:
    """Write `files` as `<job>/<stage>/part-XXXXX.parquet` and mark the stage complete."""
    urls = []
    for i, table in enumerate(files):
        url = storage.join(job, stage, f"part-{i:05d}.parquet")
        write_table(table, url)
        urls.append(url)
    jobdir.mark_complete(job, stage)
    return urls


def tiny_tokenizer(vocab_size: int = 400, seed: int = 0):
    """A byte-fallback BPE tokenizer trained in well under a second on synthetic text."""
    from shammie.mixing.tokenizer import train_tokenizer

    return train_tokenizer(synthetic_texts(300, seed), vocab_size, "bpe")


def write_token_store(store: str, domains: dict[str, list[np.ndarray]], tokenizer=None, *,
                      shard_tokens: int = 1 << 27, seq_len: int = fmt.DEFAULT_SEQ_LEN, build_id: str = "0123456789ab",
                      keep_builds: int | None = None) -> dict:
    """Publish a store whose documents are the given token arrays (each gets `eod` appended).

    The text shards hold a placeholder text per document; use `build_store` for real text."""
    from shammie.mixing.store_writer import StoreWriter

    tokenizer = tokenizer or tiny_tokenizer()
    schema = pa.schema([pa.field("id", pa.string()), pa.field("text", pa.string()), pa.field("n_tokens", pa.int64())])
    writer = StoreWriter(store, tokenizer, build_id=build_id, text_schema=schema, seq_len=seq_len,
                         shard_tokens=shard_tokens, info={"group_by": "synthetic"},
                         **({} if keep_builds is None else {"keep_builds": keep_builds}))
    for name, docs in sorted(domains.items()):
        batch = 1024
        for start in range(0, len(docs), batch):
            chunk = docs[start:start + batch]
            lengths = np.array([len(d) + 1 for d in chunk], dtype=np.int64)
            tokens = np.concatenate([np.append(np.asarray(d), tokenizer.eod_id) for d in chunk])
            table = pa.table({"id": [f"{name}-{start + i}" for i in range(len(chunk))],
                              "text": [f"synthetic document {start + i}" for i in range(len(chunk))],
                              "n_tokens": lengths}, schema=schema)
            writer.add(name, table, tokens.astype(tokenizer.dtype), lengths)
    return writer.commit()


class StoreProbe:
    """A map-style dataset (duck-typed for `torch.utils.data.DataLoader`) whose item i is what a
    DataLoader worker sees of the store: its process id, its build, its sizes and sequence i of
    `domain`. Defined here, not in a test, so that spawned workers can import it."""

    def __init__(self, store, domain: str, seq_len: int, count: int):
        self.store, self.domain, self.seq_len, self.count = store, domain, seq_len, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        import os

        return {"pid": os.getpid(), "build_id": self.store.manifest["build_id"],
                "num_sequences": {d: self.store.num_sequences(d, self.seq_len) for d in self.store.domains},
                "sequence": self.store.sequence(self.domain, self.seq_len, i, dtype=np.int64)}
