"""Writing a shard store: per-domain shard files under temporary names, manifest last.

Three layers, shared by the two ways a store is written:
- `_ShardWriter`: the three files of one shard (text, tokens, index), published atomically;
- `DomainShards`: one domain's documents cut into shards of about `shard_tokens` tokens
  (documents are never split), each named by a stem function;
- `publish_build`: the tokenizer, `manifest.json` (last), the build record, `_SUCCESS`,
  then garbage collection of older builds.
`StoreWriter` (benchmarks, tests: a store from token arrays already in memory) strings
them together in one process; `build_store` runs `DomainShards` in its tokenize tasks
(mixing/store_pieces.py) and `publish_build` in the driver. Nothing a reader can see
changes until `manifest.json` is replaced; files of older builds are deleted only
after that, so a crash anywhere leaves the previous store valid and a re-run simply
writes the new build again.

Retention: `commit()` records every published manifest as `_builds/<build_id>.json`
and keeps the files of the newest `keep_builds` (default 2) published builds. A
reader pins the build it opened, so a trainer that opened the previous build keeps
reading it, unchanged, through one rebuild; after `keep_builds - 1` more rebuilds its
files are deleted and a reader that still needs one gets `BuildRemovedError`.
"""

from __future__ import annotations

import datetime as _dt
import os
import posixpath
import uuid
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shammie.mixing import store_format as fmt
from shammie.mixing.tokenizer import Tokenizer
from shammie.pipeline import storage

DEFAULT_SHARD_TOKENS = 128 * 1024 * 1024
# Small row groups keep `document(i)` cheap: it decodes one row group of text.
ROW_GROUP_ROWS = 512


class _AtomicFile:
    """One output file written to a local temporary path and published by `publish()`.

    Remote files go through `storage.atomic_write` (one PUT). Local ones are renamed into
    place here, so that a transient file (a small piece a merge task consumes and deletes
    minutes later) can skip the fsync that a shard a manifest lists gets: on a busy disk
    the fsync of thousands of small pieces cost more wall time than writing them. A piece
    lost to a power failure makes its merge task fail naming it, never a silent gap."""

    def __init__(self, url: str):
        self.url = url
        if storage.is_remote(url):
            self._cm = storage.atomic_write(url)
            self.local = self._cm.__enter__()
            return
        self._cm = None
        self.path = storage.strip_file_scheme(url)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        # The temporary name storage.atomic_write uses (collect_garbage deletes leftovers).
        self.local = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(self.path)}")

    def publish(self, durable: bool = True) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            return
        if durable:
            with open(self.local, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(self.local, self.path)

    def discard(self) -> None:
        if self._cm is not None:
            try:
                self._cm.__exit__(RuntimeError, RuntimeError("discarded"), None)
            except RuntimeError:
                pass
            return
        try:
            os.unlink(self.local)
        except FileNotFoundError:
            pass


class _ShardWriter:
    """The text, token and index files of one shard of a domain (`<domain>/<stem>.*`), written side by side."""

    def __init__(self, store: str, domain: str, stem: str, dtype: np.dtype, schema: pa.Schema):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.schema = schema
        self.rel = {kind: posixpath.join(domain, name) for kind, name in fmt.stem_names(stem).items()}
        self.files = {kind: _AtomicFile(storage.join(store, domain, posixpath.basename(rel)))
                      for kind, rel in self.rel.items()}
        self._parquet = pq.ParquetWriter(self.files["text"].local, schema, compression="zstd")
        self._tokens = open(self.files["tokens"].local, "wb")
        self._token_hash = fmt.new_hasher()
        self._lengths: list[np.ndarray] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.documents = 0
        self.tokens = 0
        self.durable = True

    def add(self, table: pa.Table, tokens: np.ndarray, lengths: np.ndarray) -> None:
        data = np.ascontiguousarray(tokens, dtype=self.dtype).tobytes()
        self._tokens.write(data)
        self._token_hash.update(data)
        self._lengths.append(np.asarray(lengths, dtype=np.uint64))
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.documents += table.num_rows
        self.tokens += int(len(tokens))
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush_text()

    def _flush_text(self) -> None:
        if self._pending:
            self._parquet.write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
        self._pending, self._pending_rows = [], 0

    def finish(self) -> dict[str, Any]:
        """Close and publish the three files; return the shard's manifest entry. With `durable` set
        False beforehand, without fsync (a transient piece, see `_AtomicFile`)."""
        self._flush_text()
        self._parquet.close()
        self._tokens.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.empty(0, np.uint64)
        offsets = np.zeros(len(lengths) + 1, dtype=fmt.INDEX_DTYPE)
        np.cumsum(lengths, out=offsets[1:])
        with open(self.files["index"].local, "wb") as f:
            f.write(offsets.tobytes())
        entry: dict[str, Any] = {"documents": self.documents, "tokens": self.tokens, "files": {}}
        for kind, out in self.files.items():
            checksum = (fmt.checksum_string(self._token_hash) if kind == "tokens"
                        else fmt.file_checksum(out.local))
            entry["files"][kind] = {"path": self.rel[kind], "bytes": os.path.getsize(out.local),
                                    "checksum": checksum}
        for out in self.files.values():
            out.publish(self.durable)
        return entry

    def discard(self) -> None:
        try:
            self._parquet.close()
            self._tokens.close()
        finally:
            for out in self.files.values():
                out.discard()


class DomainShards:
    """One domain's documents, in the order added, cut into shards of about `shard_tokens` tokens.

    A shard is closed once it holds `shard_tokens` or more (documents are never split, so
    a closed shard may exceed it by less than one document); the last one holds the rest.
    `stem_of(j)` names shard j. `finish()` returns the manifest entries of the shards.
    A last shard of fewer than `transient_below` tokens is a piece that will be merged and
    deleted: it is published without fsync."""

    def __init__(self, store: str, domain: str, stem_of: Callable[[int], str], dtype: np.dtype,
                 schema: pa.Schema, shard_tokens: int, transient_below: int = 0):
        self.store, self.domain, self.stem_of = store, domain, stem_of
        self.dtype, self.schema, self.shard_tokens = dtype, schema, int(shard_tokens)
        self.transient_below = int(transient_below)
        self.done: list[dict[str, Any]] = []
        self._open: _ShardWriter | None = None

    def add(self, table: pa.Table, tokens: np.ndarray, lengths: np.ndarray) -> None:
        """Append rows (already in `schema`) with their tokens; `lengths` = tokens per row."""
        lengths = np.asarray(lengths, dtype=np.int64)
        ends = np.cumsum(lengths)
        row, tok = 0, 0
        while row < table.num_rows:
            if self._open is None:
                self._open = _ShardWriter(self.store, self.domain, self.stem_of(len(self.done)), self.dtype,
                                          self.schema)
            shard = self._open
            # Rows up to the one that fills this shard to `shard_tokens` (documents are never split).
            room = self.shard_tokens - shard.tokens
            stop = int(np.searchsorted(ends, tok + room, side="left")) + 1
            stop = min(max(stop, row + 1), table.num_rows)
            tok_stop = int(ends[stop - 1])
            shard.add(table.slice(row, stop - row), tokens[tok:tok_stop], lengths[row:stop])
            row, tok = stop, tok_stop
            if shard.tokens >= self.shard_tokens:
                self.done.append(shard.finish())
                self._open = None

    def finish(self) -> list[dict[str, Any]]:
        if self._open is not None:
            self._open.durable = self._open.tokens >= self.transient_below
            self.done.append(self._open.finish())
            self._open = None
        return self.done

    def discard(self) -> None:
        if self._open is not None:
            self._open.discard()
            self._open = None


class StoreWriter:
    """Append documents (rows + their token ids) per domain; `commit()` publishes the store.

    `text_schema` is the schema of the text shards (the input rows, usually with an
    `n_tokens` column). Documents of a domain are stored in the order they are added.
    Everything passes through this one process: fine for tests, benchmarks and stores
    written from token arrays; `build_store` writes in its workers instead."""

    def __init__(self, store: str, tokenizer: Tokenizer, *, build_id: str, text_schema: pa.Schema,
                 seq_len: int = fmt.DEFAULT_SEQ_LEN, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                 info: dict[str, Any] | None = None, keep_builds: int = fmt.DEFAULT_KEEP_BUILDS):
        check_build_id(build_id)
        if int(keep_builds) < 1:
            raise ValueError(f"keep_builds must be >= 1 (the published build), not {keep_builds}")
        self.keep_builds = int(keep_builds)
        self.store = store
        self.tokenizer = tokenizer
        self.build_id = build_id
        self.text_schema = text_schema
        self.seq_len = int(seq_len)
        self.shard_tokens = int(shard_tokens)
        self.info = dict(info or {})
        self._domains: dict[str, DomainShards] = {}
        storage.makedirs(store)

    def add(self, domain: str, table: pa.Table, tokens: np.ndarray, lengths: np.ndarray) -> None:
        if table.num_rows != len(lengths):
            raise ValueError("one length per row is required")
        if int(np.sum(lengths)) != len(tokens):
            raise ValueError("lengths must add up to len(tokens)")
        if table.num_rows == 0:
            return
        table = cast_rows(table, self.text_schema)
        shards = self._domains.get(domain)
        if shards is None:
            shards = self._domains[domain] = DomainShards(
                self.store, domain, lambda k: fmt.shard_stem(self.build_id, k),
                self.tokenizer.dtype, self.text_schema, self.shard_tokens)
        shards.add(table, tokens, lengths)

    def abort(self) -> None:
        for shards in self._domains.values():
            shards.discard()

    def commit(self) -> dict[str, Any]:
        """Publish the remaining shards, the tokenizer, then the manifest; delete older builds' files."""
        domains = {domain: self._domains[domain].finish() for domain in sorted(self._domains)}
        manifest = new_manifest(self.tokenizer, build_id=self.build_id, seq_len=self.seq_len, domains=domains,
                                info=self.info)
        publish_build(self.store, manifest, self.tokenizer, keep_builds=self.keep_builds)
        return manifest


def shard_entry(store: str, domain: str, stem: str, dtype: np.dtype) -> dict[str, Any] | None:
    """The manifest entry of shard `<domain>/<stem>` read back from its files; None unless all three exist.

    For a task that finds its shard already written (a retry after its worker died between
    publishing and reporting): counts follow from the raw files' sizes, checksums are re-read."""
    itemsize = np.dtype(dtype).itemsize
    entry: dict[str, Any] = {"files": {}}
    for kind, name in fmt.stem_names(stem).items():
        rel = posixpath.join(domain, name)
        fs, path = storage.get_fs(storage.join(store, domain, name))
        try:
            size = int(fs.info(path)["size"])
        except (FileNotFoundError, OSError):
            return None
        entry["files"][kind] = {"path": rel, "bytes": size, "checksum": fmt.file_checksum(path, fs.open)}
    entry["documents"] = entry["files"]["index"]["bytes"] // 8 - 1
    entry["tokens"] = entry["files"]["tokens"]["bytes"] // itemsize
    return {"documents": entry["documents"], "tokens": entry["tokens"], "files": entry["files"]}


def check_build_id(build_id: str) -> None:
    if len(build_id) != 12 or any(c not in "0123456789abcdef" for c in build_id):
        raise ValueError("build_id must be 12 lowercase hex digits")


def cast_rows(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The rows in the store's text schema (column order and types), or a StoreError saying why not."""
    try:
        return table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, ValueError) as e:
        raise fmt.StoreError(f"input rows do not match the store's text schema: {e}") from None


def new_manifest(tokenizer: Tokenizer, *, build_id: str, seq_len: int, domains: dict[str, list[dict]],
                 info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of a build: `domains` maps each domain to its shard entries, in store order."""
    entries = {}
    for domain in sorted(domains):
        shards = domains[domain]
        entries[domain] = {"documents": sum(s["documents"] for s in shards),
                           "tokens": sum(s["tokens"] for s in shards), "shards": shards}
    return {
        "format": fmt.FORMAT,
        "format_version": fmt.FORMAT_VERSION,
        "build_id": build_id,
        "created_at": _now(),
        "tokenizer": {
            "path": fmt.tokenizer_name(tokenizer.sha256),
            "bytes": len(tokenizer.model_proto),
            "checksum": fmt.bytes_checksum(tokenizer.model_proto),
            "sha256": tokenizer.sha256,
            "source": tokenizer.source,
            "train_recipe": getattr(tokenizer, "train_recipe", None),
            # the vocabulary size a trained tokenizer was asked for (a small sample gives fewer pieces)
            "vocab_asked": getattr(tokenizer, "vocab_asked", None),
            "model_type": tokenizer.model_type,
            "vocab_size": tokenizer.vocab_size,
            "eod_id": tokenizer.eod_id,
        },
        "token_dtype": np.dtype(tokenizer.dtype).newbyteorder("<").str,
        "index_dtype": fmt.INDEX_DTYPE,
        "seq_len": int(seq_len),
        "documents": sum(d["documents"] for d in entries.values()),
        "tokens": sum(d["tokens"] for d in entries.values()),
        "domains": entries,
        **(info or {}),
    }


def write_tokenizer(store: str, tokenizer: Tokenizer) -> str:
    """Write the tokenizer model into the store (before the shards' tasks, which load it from there)."""
    url = storage.join(store, fmt.tokenizer_name(tokenizer.sha256))
    fp = storage.file_fingerprint(url, checksum=False)
    if fp is None or fp["size"] != len(tokenizer.model_proto) or storage.read_bytes(url) != tokenizer.model_proto:
        storage.write_bytes_atomic(url, tokenizer.model_proto)
    return url


def publish_build(store: str, manifest: dict[str, Any], tokenizer: Tokenizer, *,
                  keep_builds: int = fmt.DEFAULT_KEEP_BUILDS, success: dict[str, Any] | None = None) -> None:
    """Make `manifest` (whose shard files are all written) the store's current build.

    Order: tokenizer, manifest (the one step readers see), build record, `_SUCCESS`
    (with `success` merged in), then older builds' files are deleted."""
    write_tokenizer(store, tokenizer)
    fmt.check_manifest(manifest, f"new manifest of {store}")  # never publish one a reader would refuse
    _record_previous_build(store, manifest["build_id"])
    storage.write_json_atomic(storage.join(store, fmt.MANIFEST), manifest)
    # The record is written after the manifest: a crash in between leaves an
    # unrecorded current build (collect_garbage always keeps the current one), never
    # a record of a build that was not published.
    write_build_record(store, manifest, published_at=_now())
    storage.write_json_atomic(storage.join(store, fmt.SUCCESS),
                              {"stage": "store", "build_id": manifest["build_id"],
                               "finished_at": manifest["created_at"], **(success or {})})
    collect_garbage(store, manifest, keep_builds=keep_builds)


def referenced_files(manifest: dict[str, Any]) -> set[str]:
    paths = {manifest["tokenizer"]["path"]}
    for domain in manifest["domains"].values():
        for shard in domain["shards"]:
            paths.update(f["path"] for f in shard["files"].values())
    return paths


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def write_build_record(store: str, manifest: dict[str, Any], *, published_at: str) -> None:
    storage.write_json_atomic(storage.join(store, fmt.build_record_name(manifest["build_id"])),
                              {**manifest, "published_at": published_at})


def _record_previous_build(store: str, new_build_id: str) -> None:
    """Give the build about to be replaced a record if it has none (stores written before
    records existed), so that its files count as the previous build and are kept."""
    try:
        previous = storage.read_json(storage.join(store, fmt.MANIFEST))
        fmt.check_manifest(previous, "previous manifest")
    except (ValueError, OSError):
        return  # nothing usable to keep: no store yet, or a damaged manifest
    if previous["build_id"] != new_build_id and not storage.exists(
            storage.join(store, fmt.build_record_name(previous["build_id"]))):
        write_build_record(store, previous, published_at=str(previous.get("created_at") or ""))


def build_records(store: str) -> dict[str, dict[str, Any]]:
    """build_id -> record (manifest + published_at) of the builds recorded in `STORE/_builds/`."""
    records = {}
    for name in storage.listdir(storage.join(store, fmt.BUILDS)):
        if not name.endswith(".json"):
            continue
        try:
            record = fmt.check_manifest(storage.read_json(storage.join(store, fmt.BUILDS, name)), name)
        except (ValueError, OSError):
            continue  # an unreadable record protects nothing; its build's files are collected
        records[record["build_id"]] = record
    return records


def kept_builds(store: str, manifest: dict[str, Any], keep_builds: int = fmt.DEFAULT_KEEP_BUILDS) -> list[dict]:
    """The builds whose files stay: the published `manifest`, then the most recently published others."""
    records = build_records(store)
    others = sorted((r for b, r in records.items() if b != manifest["build_id"]),
                    key=lambda r: str(r.get("published_at") or ""), reverse=True)
    return [manifest] + others[:max(0, keep_builds - 1)]


def collect_garbage(store: str, manifest: dict[str, Any], keep_builds: int = fmt.DEFAULT_KEEP_BUILDS) -> int:
    """Delete files (and build records) of builds older than the newest `keep_builds`, and leftover temporaries.

    Why not just the builds nobody reads: readers are other processes, possibly on other
    machines, and leave no trace in the store; a fixed number of builds is a rule both
    sides can rely on (docs/store.md, "Rebuilding under a running reader")."""
    kept = kept_builds(store, manifest, keep_builds)
    keep = set().union(*(referenced_files(m) for m in kept))
    kept_ids = {m["build_id"] for m in kept}
    for build_id in build_records(store):
        if build_id not in kept_ids:
            storage.remove(storage.join(store, fmt.build_record_name(build_id)))
    fs, root = storage.get_fs(store)
    fs.invalidate_cache(root)
    removed = 0
    for path in fs.find(root):
        rel = posixpath.relpath(path, root) if not storage.is_remote(store) else path[len(root):].lstrip("/")
        rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if len(parts) > 2 or parts[0].startswith("_"):
            continue
        if rel in keep or not fmt.OWNED_FILE.match(parts[-1]):
            continue
        fs.rm(path)
        removed += 1
    if not storage.is_remote(store):
        for name in os.listdir(root):
            folder = os.path.join(root, name)
            if os.path.isdir(folder) and not name.startswith("_") and not os.listdir(folder):
                os.rmdir(folder)
    return removed
