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

from shammie.dedup.arrays import load_npy, save_npy
from shammie.dedup.signatures import normalise_words
from shammie.pipeline import documents, jobdir, storage
from shammie.pipeline.options import option
from shammie.pipeline.stage import DocumentStage, Task, read_documents



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
    save_npy(p["output"], hashes)
    return {"documents": len(hashes)}


def filter_task(p: dict) -> dict:
    table = read_documents(p["input"])
    keep = load_npy(p["keep"])
    documents.write_table(table.filter(keep), p["output"])
    return {"documents": int(keep.sum()), "removed": int((~keep).sum())}


def exact_keep_masks(ctx, tasks: list[Task], across_snapshots: bool, work: str) -> tuple[list[str], np.ndarray]:
    """Hash every input file on the workers, then mark the first copy of each text: one
    boolean .npy per file (in input order) under `<out>/<work>/exact/`. Returns their URLs
    and the (first copy, copy) pairs of global row numbers (files in order, then rows),
    which MinHash dedup adds to its clusters so that cluster sizes count exact copies too.

    The driver holds about 24 bytes per document (hashes, inverse, mask)."""
    folder = f"{work}/exact"
    hash_urls = [storage.join(ctx.out, folder, f"{t.name}.hashes.npy") for t in tasks]
    ctx.run_tasks([Task(t.name, {"input": t.payload["input"], "output": u, "across": across_snapshots},
                        (f"{folder}/{t.name}.hashes.npy",)) for t, u in zip(tasks, hash_urls)],
                  hash_task, folder=folder, desc="exact duplicates: hashing")
    hashes = [load_npy(u) for u in hash_urls]
    # the first position of each hash, in input order (file name, then row), is the copy kept
    _, first, inverse = np.unique(np.concatenate(hashes) if hashes else np.empty(0, np.uint64),
                                  return_index=True, return_inverse=True)
    keep_all = np.zeros(sum(len(h) for h in hashes), dtype=bool)
    keep_all[first] = True
    copies = np.flatnonzero(~keep_all)
    edges = np.stack([first[inverse[copies]], copies], axis=1).astype(np.int64) if copies.size \
        else np.empty((0, 2), np.int64)
    keep_urls, start = [], 0
    for task, h in zip(tasks, hashes):
        url = storage.join(ctx.out, folder, f"{task.name}.keep.npy")
        save_npy(url, keep_all[start:start + len(h)])
        start += len(h)
        keep_urls.append(url)
    return keep_urls, edges


class ExactDedupStage(DocumentStage):
    """Remove exact duplicates (same normalised text), keeping the first, per snapshot."""

    name = "exact_dedup"
    output = jobdir.EXACT_DEDUPED
    Options = ExactDedupOptions

    def execute(self, ctx) -> dict[str, dict]:
        keep_urls, _ = exact_keep_masks(ctx, ctx.tasks, self.options.across_snapshots, "_work")
        filters = [Task(t.name, {**t.payload, "keep": k}, t.outputs) for t, k in zip(ctx.tasks, keep_urls)]
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
