"""Writing a shard store: per-domain shard files under temporary names, manifest last.

`StoreWriter` is what `build_store` uses after tokenization, and what benchmarks or
tests use to write a store from token arrays they already have. Nothing a reader
can see changes until `commit()` replaces `manifest.json`; files of older builds
are deleted only after that, so a crash anywhere leaves the previous store valid
and a re-run simply writes the new build again.
"""

from __future__ import annotations

import datetime as _dt
import os
import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shammie.mixing import store_format as fmt
from shammie.mixing.tokenizer import Tokenizer
from shammie.pipeline import storage
from shammie.pipeline.errors import UserError

DEFAULT_SHARD_TOKENS = 128 * 1024 * 1024
# Small row groups keep `document(i)` cheap: it decodes one row group of text.
ROW_GROUP_ROWS = 512


class _AtomicFile:
    """One output file written to a local temporary path and published by `publish()`."""

    def __init__(self, url: str):
        self.url = url
        self._cm = storage.atomic_write(url)
        self.local = self._cm.__enter__()

    def publish(self) -> None:
        self._cm.__exit__(None, None, None)

    def discard(self) -> None:
        try:
            self._cm.__exit__(RuntimeError, RuntimeError("discarded"), None)
        except RuntimeError:
            pass


class _ShardWriter:
    """Text shard k, token shard k and index k of one domain, written side by side."""

    def __init__(self, store: str, domain: str, build_id: str, k: int, dtype: np.dtype, schema: pa.Schema):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.schema = schema
        self.rel = {kind: posixpath.join(domain, name) for kind, name in fmt.shard_names(build_id, k).items()}
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
            out.publish()
        return entry

    def discard(self) -> None:
        try:
            self._parquet.close()
            self._tokens.close()
        finally:
            for out in self.files.values():
                out.discard()


class StoreWriter:
    """Append documents (rows + their token ids) per domain; `commit()` publishes the store.

    `text_schema` is the schema of the text shards (the input rows, usually with an
    `n_tokens` column). Documents of a domain are stored in the order they are added."""

    def __init__(self, store: str, tokenizer: Tokenizer, *, build_id: str, text_schema: pa.Schema,
                 seq_len: int = 2048, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                 info: dict[str, Any] | None = None):
        if len(build_id) != 12 or any(c not in "0123456789abcdef" for c in build_id):
            raise ValueError("build_id must be 12 lowercase hex digits")
        self.store = store
        self.tokenizer = tokenizer
        self.build_id = build_id
        self.text_schema = text_schema
        self.seq_len = int(seq_len)
        self.shard_tokens = int(shard_tokens)
        self.info = dict(info or {})
        self._open: dict[str, _ShardWriter] = {}
        self._done: dict[str, list[dict]] = {}
        storage.makedirs(store)

    def add(self, domain: str, table: pa.Table, tokens: np.ndarray, lengths: np.ndarray) -> None:
        if table.num_rows != len(lengths):
            raise ValueError("one length per row is required")
        if int(np.sum(lengths)) != len(tokens):
            raise ValueError("lengths must add up to len(tokens)")
        if table.num_rows == 0:
            return
        try:
            table = table.select(self.text_schema.names).cast(self.text_schema)
        except (KeyError, pa.ArrowInvalid, ValueError) as e:
            raise UserError(f"input rows do not match the store's text schema: {e}") from None
        lengths = np.asarray(lengths, dtype=np.int64)
        ends = np.cumsum(lengths)
        row, tok = 0, 0
        while row < table.num_rows:
            shard = self._open.get(domain)
            if shard is None:
                k = len(self._done.setdefault(domain, []))
                shard = self._open[domain] = _ShardWriter(self.store, domain, self.build_id, k,
                                                           self.tokenizer.dtype, self.text_schema)
            # Rows up to the one that fills this shard to `shard_tokens` (documents are never split).
            room = self.shard_tokens - shard.tokens
            stop = int(np.searchsorted(ends, tok + room, side="left")) + 1
            stop = min(max(stop, row + 1), table.num_rows)
            tok_stop = int(ends[stop - 1])
            shard.add(table.slice(row, stop - row), tokens[tok:tok_stop], lengths[row:stop])
            row, tok = stop, tok_stop
            if shard.tokens >= self.shard_tokens:
                self._done[domain].append(shard.finish())
                del self._open[domain]

    def abort(self) -> None:
        for shard in self._open.values():
            shard.discard()
        self._open.clear()

    def commit(self) -> dict[str, Any]:
        """Publish the remaining shards, the tokenizer, then the manifest; delete older builds' files."""
        for domain, shard in sorted(self._open.items()):
            self._done[domain].append(shard.finish())
        self._open.clear()
        tok_name = fmt.tokenizer_name(self.tokenizer.sha256)
        storage.write_bytes_atomic(storage.join(self.store, tok_name), self.tokenizer.model_proto)
        domains = {}
        for domain in sorted(self._done):
            shards = self._done[domain]
            domains[domain] = {"documents": sum(s["documents"] for s in shards),
                               "tokens": sum(s["tokens"] for s in shards), "shards": shards}
        manifest = {
            "format": fmt.FORMAT,
            "format_version": fmt.FORMAT_VERSION,
            "build_id": self.build_id,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "tokenizer": {
                "path": tok_name,
                "bytes": len(self.tokenizer.model_proto),
                "checksum": fmt.bytes_checksum(self.tokenizer.model_proto),
                "sha256": self.tokenizer.sha256,
                "source": self.tokenizer.source,
                "train_recipe": getattr(self.tokenizer, "train_recipe", None),
                "model_type": self.tokenizer.model_type,
                "vocab_size": self.tokenizer.vocab_size,
                "eod_id": self.tokenizer.eod_id,
            },
            "token_dtype": np.dtype(self.tokenizer.dtype).newbyteorder("<").str,
            "index_dtype": fmt.INDEX_DTYPE,
            "seq_len": self.seq_len,
            "documents": sum(d["documents"] for d in domains.values()),
            "tokens": sum(d["tokens"] for d in domains.values()),
            "domains": domains,
            **self.info,
        }
        storage.write_json_atomic(storage.join(self.store, fmt.MANIFEST), manifest)
        storage.write_json_atomic(storage.join(self.store, fmt.SUCCESS),
                                  {"stage": "store", "build_id": self.build_id,
                                   "finished_at": manifest["created_at"]})
        collect_garbage(self.store, manifest)
        return manifest


def referenced_files(manifest: dict[str, Any]) -> set[str]:
    paths = {manifest["tokenizer"]["path"]}
    for domain in manifest["domains"].values():
        for shard in domain["shards"]:
            paths.update(f["path"] for f in shard["files"].values())
    return paths


def collect_garbage(store: str, manifest: dict[str, Any]) -> int:
    """Delete files of older builds (and leftover temporaries) that `manifest` does not use."""
    keep = referenced_files(manifest)
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
