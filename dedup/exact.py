"""Exact-duplicate removal: one document per normalised text, per snapshot (documents/ -> exact-deduped/).

The cheap pass every peer pipeline runs before MinHash: the text is normalised as the
MinHash signatures normalise it (FineWeb's simplify_text, then whitespace words), hashed
to 64 bits (xxh3), and in each snapshot the first document of a hash (by input file name,
then row) is kept. Two phases, written on the stage runner: hash every file (one task
per file), then drop the rows whose hash an earlier row had (one task per file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shammie.dedup.signatures import normalise_words
from shammie.pipeline import documents, jobdir, storage
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, Task, read_documents

HASHES = "_work/hashes"


@dataclass(frozen=True)
class ExactDedupOptions:
    job: str = option(help="job directory with a complete documents/ folder", kind="output", positional=True,
                      metavar="DIR", yaml=False)
    across_snapshots: bool = option(False, help="one copy in the whole input instead of one per snapshot")
    input_stage: str | None = option(None, help="document folder to read (default: documents/)", metavar="STAGE")


def text_hashes(texts: list[str], dumps: list[str], across_snapshots: bool) -> np.ndarray:
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(b" ".join(normalise_words(t or "")),
                                                 seed=0 if across_snapshots else xxhash.xxh32_intdigest((d or "").encode()))
                        for t, d in zip(texts, dumps)), dtype=np.uint64, count=len(texts))


def hash_task(p: dict) -> dict:
    table = read_documents(p["input"], columns=["text", "dump"])
    hashes = text_hashes(table["text"].to_pylist(), table["dump"].to_pylist(), p["across"])
    _save(p["output"], hashes)
    return {"documents": len(hashes)}


def _save(url: str, array: np.ndarray) -> None:
    with storage.atomic_write(url) as local, open(local, "wb") as f:
        np.save(f, array)


def _load(url: str) -> np.ndarray:
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return np.load(f)


def filter_task(p: dict) -> dict:
    table = read_documents(p["input"])
    keep = _load(p["keep"])
    documents.write_table(table.filter(keep), p["output"])
    return {"documents": int(keep.sum()), "removed": int((~keep).sum())}


class ExactDedupStage(DocumentStage):
    """Remove exact duplicates (same normalised text), keeping the first, per snapshot."""

    name = "exact_dedup"
    output = jobdir.EXACT_DEDUPED
    Options = ExactDedupOptions

    def execute(self, ctx) -> dict[str, dict]:
        across = self.options.across_snapshots
        hash_urls = [storage.join(ctx.out, HASHES, f"{t.name}.npy") for t in ctx.tasks]
        ctx.run_tasks([Task(t.name, {"input": t.payload["input"], "output": u, "across": across},
                            (f"{HASHES}/{t.name}.npy",)) for t, u in zip(ctx.tasks, hash_urls)],
                      hash_task, folder=HASHES, desc="exact dedup 1/2 hashes")
        # 8 bytes per document in the driver: the first position of each hash, in input order
        # (file name, then row), is the copy kept.
        hashes = [_load(u) for u in hash_urls]
        _, first = np.unique(np.concatenate(hashes) if hashes else np.empty(0, np.uint64), return_index=True)
        keep_all = np.zeros(sum(len(h) for h in hashes), dtype=bool)
        keep_all[first] = True
        filters, start = [], 0
        for task, h in zip(ctx.tasks, hashes):
            keep_url = storage.join(ctx.out, "_work", "keep", f"{task.name}.npy")
            _save(keep_url, keep_all[start:start + len(h)])
            start += len(h)
            filters.append(Task(task.name, {**task.payload, "keep": keep_url}, task.outputs))
        results = ctx.run_tasks(filters, filter_task, desc="exact dedup 2/2 filter")
        storage.remove(storage.join(ctx.out, "_work"))
        return results

    def summarize(self, results: dict[str, dict]) -> dict:
        kept = sum(r["documents"] for r in results.values())
        removed = sum(r["removed"] for r in results.values())
        return {"documents": kept, "documents_in": kept + removed, "removed": removed, "kept": kept,
                "scope": "across snapshots" if self.options.across_snapshots else "per snapshot",
                "input_stage": self.input_stage(), "files": len(results)}

    def describe(self, section: dict) -> str:
        return (f"exact dedup ({section['scope']}): {section['documents_in']} documents in, {section['removed']} "
                f"exact duplicates removed, {section['kept']} kept -> {self.output}/")
