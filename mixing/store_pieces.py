"""The store's shards, written by workers: tokenize tasks write pieces, merge tasks join the small ones.

Tokenize (`tokenize_task`, one task per contiguous group of input files): every row
gets its domain (the fold the driver computed, a small mapping read from a file), its
token ids, and is appended to its domain's pieces, written straight into the store
in the final shard format under the build's names: `<domain>/<build>-<task>-<j>.*`,
cut at `shard_tokens` like any shard. No manifest lists them yet, so readers never
see them. A domain's pieces hold its rows of this task in input order (file, then row).

A task's share of a small domain is small (a few documents of one site per file),
so the last piece of each (task, domain) is classified by size:
- kept (>= `keep_tokens`, and every piece but the last, which are full): a shard as it
  is; the task returns its manifest entry;
- small: the task returns only its counts (`pieces` below). The driver groups runs
  of consecutive small pieces of a domain (task order) into shards of at most
  `shard_tokens` (`plan_merges`), and `merge_task` writes each group as one shard
  `<first piece>-m`, then deletes the pieces it consumed. The disk peak stays near the
  store's size: pieces are copied once at most, and only the small ones.

What the driver holds per (task, domain) pair: 4 int64 in the task's result (base64,
~43 B as text) plus the domain's index (a name only when nothing folds), then one row
of 6 int64 in the merge plan; measured with `benchmarks/store_scale.py --plan-pairs`
(docs/store.md, "Scale"). The kept pieces' entries (~1.5 KB each) are O(shards).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from shammie.dedup.history import CLUSTER_SIZE_COLUMN, upsampling_weights
from shammie.mixing import domains as dom
from shammie.mixing import store_format as fmt
from shammie.mixing.store_format import StoreError
from shammie.mixing.store_writer import DomainShards, _ShardWriter, cast_rows, shard_entry
from shammie.mixing.tokenizer import Tokenizer
from shammie.pipeline import storage
from shammie.pipeline.documents import read_table

N_TOKENS_COLUMN = "n_tokens"
# Columns of the `pieces` array a tokenize task returns, one row per domain it wrote.
PIECE_FIELDS = ("pieces", "last_documents", "last_tokens", "last_kept")

_CACHE: dict[str, Any] = {}


def _cached(key: str, make):
    """One object per worker process and key (the tokenizer, the fold), rebuilt when the key changes."""
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = make()
    return _CACHE[key]


def _tokenizer(url: str, sha256: str) -> Tokenizer:
    return _cached(f"tok:{sha256}", lambda: Tokenizer(storage.read_bytes(url)))


def _fold(url: str | None) -> tuple[Callable[[str | None], str], dict[str, int] | None]:
    """(raw key -> domain name, domain name -> its index in the fold's domain list): the driver's
    DomainFolder mapping, or safe names and no index when nothing folds."""
    if url is None:
        return dom.safe_component, None

    def load():
        fold = json.loads(storage.read_bytes(url))
        mapping = {raw: name for raw, name in fold["mapping"]}
        return (lambda raw: mapping.get(raw, dom.OTHER)), {name: i for i, name in enumerate(fold["domains"])}

    return _cached(f"fold:{url}", load)


def text_schema(input_schema: pa.Schema) -> pa.Schema:
    """The text shards' schema: the input columns, with `n_tokens` (int64) last."""
    fields = [f for f in input_schema if f.name != N_TOKENS_COLUMN]
    return pa.schema(fields + [pa.field(N_TOKENS_COLUMN, pa.int64())])


def encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def decode_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def encode_array(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<i8").tobytes()).decode()


def decode_array(text: str, columns: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i8").reshape(-1, columns)


def group_rows(names: list[str]) -> dict[str, np.ndarray]:
    """Row numbers per domain name, each in input order."""
    uniq = sorted(set(names))
    code_of = {n: i for i, n in enumerate(uniq)}
    codes = np.fromiter((code_of[n] for n in names), dtype=np.int64, count=len(names))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
    return {d: order[bounds[i]:bounds[i + 1]] for i, d in enumerate(uniq)}


def tokenize_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Input files -> pieces of every domain they hold, in the final format; returns what the driver plans with."""
    from shammie.pipeline.parallel import report_progress

    start = time.monotonic()
    tok = _tokenizer(payload["tokenizer"], payload["tokenizer_sha256"])
    fold, domain_index = _fold(payload.get("fold"))
    schema = decode_schema(payload["schema"])
    build, task = payload["build_id"], int(payload["task"])
    writers: dict[str, DomainShards] = {}
    documents = tokens_total = 0
    try:
        for url in payload["inputs"]:
            table = read_table(url)
            if payload.get("rehydrate"):
                table = rehydrated(table)
            names = [fold(k) for k in dom.raw_domain_keys(table, payload["group_by"])]
            tokens, lengths = tok.encode_documents(table.column("text").to_pylist(),
                                                   threads=payload.get("threads", 1), on_batch=report_progress)
            if N_TOKENS_COLUMN in table.column_names:
                table = table.drop_columns([N_TOKENS_COLUMN])
            table = cast_rows(table.append_column(N_TOKENS_COLUMN, pa.array(lengths, pa.int64())), schema)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            token_lists = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(tokens))
            for domain, rows in group_rows(names).items():
                if domain not in writers:
                    writers[domain] = DomainShards(payload["store"], domain,
                                                   lambda j, b=build, t=task: fmt.piece_stem(b, t, j),
                                                   tok.dtype, schema, payload["shard_tokens"],
                                                   transient_below=payload["keep_tokens"])
                picked = pa.array(rows)
                writers[domain].add(table.take(picked),
                                    token_lists.take(picked).flatten().to_numpy(zero_copy_only=False),
                                    lengths[rows])
            documents += table.num_rows
            tokens_total += int(lengths.sum())
        entries = {domain: writers[domain].finish() for domain in sorted(writers)}
    except BaseException:
        for w in writers.values():
            w.discard()
        raise
    if len(entries) > dom.MAX_DOMAINS_WITHOUT_TOP_K and payload.get("fold") is None:
        raise StoreError(f"--group-by {payload['group_by']} gives more than {dom.MAX_DOMAINS_WITHOUT_TOP_K} "
                         f"distinct values in {payload['inputs'][0]} alone; pass --top-k N to keep the N largest "
                         f"and fold the rest into {dom.OTHER!r}")
    return summarize_pieces(entries, payload["keep_tokens"], domain_index,
                            documents=documents, tokens=tokens_total, seconds=time.monotonic() - start)


def rehydrated(table: pa.Table) -> pa.Table:
    """Each row repeated by FineWeb-2's upsampling weight of its `minhash_cluster_size` (copies adjacent)."""
    if CLUSTER_SIZE_COLUMN not in table.column_names:
        raise StoreError(f"--rehydrate: a file has no {CLUSTER_SIZE_COLUMN} column (written by `shammie dedup`)")
    sizes = table.column(CLUSTER_SIZE_COLUMN).to_numpy(zero_copy_only=False)
    weights = upsampling_weights(sizes)
    return table.take(pa.array(np.repeat(np.arange(table.num_rows), weights)))


def summarize_pieces(entries: dict[str, list[dict]], keep_tokens: int, domain_index: dict[str, int] | None,
                     **totals) -> dict[str, Any]:
    """A tokenize task's result: per domain its piece count and last piece, entries of the kept pieces only.

    Domains are named by their index in the fold's domain list when there is one (an int,
    not a ~60 B string per task and domain in the driver)."""
    names = sorted(entries)
    rows, kept = [], []
    for d, domain in enumerate(names):
        shards = entries[domain]
        last = shards[-1]
        last_kept = last["tokens"] >= keep_tokens
        rows.append((len(shards), last["documents"], last["tokens"], int(last_kept)))
        for j, entry in enumerate(shards if last_kept else shards[:-1]):
            kept.append([d, j, entry])
    return {"documents": int(totals["documents"]), "tokens": int(totals["tokens"]),
            "seconds": round(float(totals["seconds"]), 3),
            "domains": names if domain_index is None else [domain_index[n] for n in names],
            "pieces": encode_array(np.array(rows, dtype=np.int64).reshape(-1, len(PIECE_FIELDS))), "kept": kept}


# ---------------------------------------------------------------- merging small pieces


def plan_merges(results: list[dict[str, Any]], shard_tokens: int,
                domain_list: list[str] | None = None) -> "MergePlan":
    """Group runs of consecutive small pieces per domain (results in task order; the list is consumed)."""
    return MergePlan(results, shard_tokens, domain_list)


def _rows(table: np.ndarray, chunk: int = 1 << 16) -> Iterator[list[int]]:
    """The table's rows as Python ints, a chunk at a time (a whole `tolist()` costs ~300 B per row)."""
    for start in range(0, len(table), chunk):
        yield from table[start:start + chunk].tolist()


class MergePlan:
    """Which pieces become shards as they are and which are merged, per domain, in store order.

    Holds per (task, domain) pair one row of 6 int64 (48 B), sorted by domain then task, and
    the kept pieces' entries; `groups` (the merge tasks) are row ranges of that table, and
    `shards(merged)` the manifest's lists. `domain_list` names the domains of results that
    give indices (tokenize tasks with a fold)."""

    TASK, DOMAIN, PIECES, LAST_DOCS, LAST_TOKENS, LAST_KEPT = range(6)

    def __init__(self, results: list[dict[str, Any]], shard_tokens: int, domain_list: list[str] | None = None):
        self.domain_ids: dict[str, int] = {}
        self.kept: dict[tuple[int, int], list[tuple[int, dict]]] = {}
        columns = []
        for task, result in enumerate(results):
            results[task] = None   # consumed: the results and the table are never both whole in memory
            ids = [self.domain_ids.setdefault(d if isinstance(d, str) else domain_list[d], len(self.domain_ids))
                   for d in result["domains"]]
            pieces = decode_array(result["pieces"], len(PIECE_FIELDS))
            if len(ids):
                columns.append(np.column_stack([np.full(len(ids), task), np.array(ids), pieces]))
            for d, j, entry in result["kept"]:
                self.kept.setdefault((task, ids[d]), []).append((j, entry))
        table = np.concatenate(columns) if columns else np.zeros((0, 2 + len(PIECE_FIELDS)), np.int64)
        del columns
        self.table = table[np.lexsort((table[:, self.TASK], table[:, self.DOMAIN]))]   # by domain, then task
        self.names = sorted(self.domain_ids, key=self.domain_ids.get)
        self.groups = self._group(int(shard_tokens))

    def _group(self, shard_tokens: int) -> list[dict[str, Any]]:
        """Greedy runs of small last pieces: a run ends at a kept piece, a full piece, or `shard_tokens`.

        A run is consecutive rows of the sorted table, so a group is its row range."""
        groups: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        prev_domain = -1
        for row, (_task, domain, n_pieces, _docs, tokens, last_kept) in enumerate(_rows(self.table)):
            if domain != prev_domain or n_pieces > 1 or last_kept:
                current = None  # another domain, or a piece in between: the run is not consecutive
            prev_domain = domain
            if last_kept:
                continue
            if current is not None and current["tokens"] + tokens <= shard_tokens:
                current["rows"][1] = row + 1
                current["tokens"] += tokens
            else:
                current = {"domain": self.names[domain], "rows": [row, row + 1], "tokens": tokens}
                groups.append(current)
        return groups

    def pieces(self, group: dict[str, Any]) -> np.ndarray:
        """(task, j) of every piece of a group, in store order."""
        rows = self.table[group["rows"][0]:group["rows"][1]]
        return np.column_stack([rows[:, self.TASK], rows[:, self.PIECES] - 1])

    def shards(self, merged: dict[tuple[str, int, int], dict]) -> dict[str, list[dict]]:
        """Every domain's shard entries in store order; `merged` maps (domain, task, j) of a group's first
        piece to the merged shard's entry."""
        out: dict[str, list[dict]] = {}
        for task, domain, n_pieces, _docs, _tokens, last_kept in _rows(self.table):
            name = self.names[domain]
            shards = out.setdefault(name, [])
            shards.extend(entry for _j, entry in sorted(self.kept.get((task, domain), []), key=lambda je: je[0]))
            if not last_kept and (name, task, n_pieces - 1) in merged:
                shards.append(merged[(name, task, n_pieces - 1)])
        return out


def merge_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Consecutive small pieces of one domain -> one shard; then the pieces are deleted."""
    start = time.monotonic()
    store, domain, build = payload["store"], payload["domain"], payload["build_id"]
    first_task, first_j = (int(x) for x in payload["pieces"][0])
    stem = fmt.merged_stem(build, first_task, first_j)
    dtype = np.dtype(payload["dtype"])
    entry = shard_entry(store, domain, stem, dtype)  # a retry after the worker died past publishing
    if entry is None:
        out = _ShardWriter(store, domain, stem, dtype, decode_schema(payload["schema"]))
        try:
            for table, tokens, lengths in _read_pieces(store, domain, build, payload["pieces"], dtype):
                out.add(table, tokens, lengths)
            entry = out.finish()
        except BaseException:
            out.discard()
            raise
    remove_files([storage.join(store, domain, name) for task, j in payload["pieces"]
                  for name in fmt.stem_names(fmt.piece_stem(build, int(task), int(j))).values()])
    return {"entry": entry, "pieces": len(payload["pieces"]), "documents": entry["documents"],
            "seconds": round(time.monotonic() - start, 3)}


def remove_files(urls: list[str]) -> None:
    """Delete files, missing ones included (a retried task); on S3 in bulk requests, not two per file."""
    if not urls:
        return
    if storage.is_remote(urls[0]):
        fs, _ = storage.get_fs(urls[0])
        paths = [storage.get_fs(u)[1] for u in urls]
        for start in range(0, len(paths), 1000):  # S3 DeleteObjects takes up to 1000 keys
            try:
                fs.rm(paths[start:start + 1000])
            except FileNotFoundError:
                pass
        return
    for url in urls:
        try:
            os.remove(storage.strip_file_scheme(url))
        except FileNotFoundError:
            pass


def _read_pieces(store: str, domain: str, build: str, pieces,
                 dtype: np.dtype) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
    for task, j in pieces:
        names = fmt.stem_names(fmt.piece_stem(build, int(task), int(j)))
        url = {kind: storage.join(store, domain, name) for kind, name in names.items()}
        table = read_table(url["text"])
        tokens = np.frombuffer(storage.read_bytes(url["tokens"]), dtype=np.dtype(dtype).newbyteorder("<"))
        offsets = np.frombuffer(storage.read_bytes(url["index"]), dtype=fmt.INDEX_DTYPE)
        if len(offsets) != table.num_rows + 1 or int(offsets[-1]) != len(tokens):
            raise StoreError(f"{url['tokens']}: piece of {table.num_rows} rows, {len(offsets) - 1} offsets and "
                             f"{len(tokens)} tokens do not match; it was damaged. Re-run with --overwrite")
        yield table, tokens, np.diff(offsets).astype(np.int64)


def fold_domain_list(folder: dom.DomainFolder) -> list[str]:
    """Every domain a fold can give, sorted: the kept names and `other`."""
    return sorted(set(folder.names()) | {dom.OTHER})


def fold_file_payload(folder: dom.DomainFolder) -> bytes:
    return json.dumps({"mapping": folder.mapping(), "domains": fold_domain_list(folder)}).encode()


def digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]
