"""The domain-grouped shard store: reader API (`open_store`) and builder (`build_store`).

Format: see `shammie.mixing.store_format`. A reader starts from `manifest.json`
and only ever opens files it lists, so a store being rebuilt stays readable.
Every shard file is checked against the manifest's size and xxh3-128 checksum the
first time this process opens it; a damaged file raises `CorruptShardError`
naming it. The manifest itself is checked when the store is opened (shape, and
counts that add up), so a reader never serves a sequence shorter than asked.

A `ShardStore` is pinned to the build it opened: it only reads that build's
manifest and files, and pickles with that manifest, so DataLoader workers started
later (spawn) read the same build even if the store was rebuilt meanwhile. Writers
keep the files of the newest two builds (`store_writer.collect_garbage`). Stores on `s3://` are read by downloading each shard when it is first
needed into a local cache (`cache_dir`, default `~/.cache/shammie/stores`), then
memory-mapping the cached copy.

Each domain's documents form one token stream (every document ends with the
end-of-document id). `sequence(domain, L, j)` is tokens [j*L, (j+1)*L) of that
stream: packing across document boundaries, with the tail shorter than L dropped.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import zlib
from collections import OrderedDict
from typing import Any, Callable, Iterator

import numpy as np

from shammie.mixing import store_format as fmt
from shammie.mixing.store_format import (BuildRemovedError, CorruptShardError, ManifestError,  # noqa: F401 (API)
                                         StoreError, TokenizerError)
from shammie.pipeline import storage

_TEXT_CACHE_GROUPS = 8


def default_cache_dir() -> str:
    return os.environ.get("SHAMMIE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "shammie", "stores")


class _Domain:
    """One domain's shards: lazily opened memmaps, boundary indexes and Parquet text."""

    def __init__(self, store: "ShardStore", name: str, entry: dict[str, Any]):
        self.store = store
        self.name = name
        self.entry = entry
        self.shards = entry["shards"]
        self.doc_starts = [0]
        self.tok_starts = [0]
        for shard in self.shards:
            self.doc_starts.append(self.doc_starts[-1] + int(shard["documents"]))
            self.tok_starts.append(self.tok_starts[-1] + int(shard["tokens"]))
        n = len(self.shards)
        self._tokens: list[np.ndarray | None] = [None] * n
        self._offsets: list[np.ndarray | None] = [None] * n
        self._text: list[Any] = [None] * n
        self._text_cache: OrderedDict = OrderedDict()
        self._layouts: dict[int, dict[str, Any]] = {}

    @property
    def num_documents(self) -> int:
        return self.doc_starts[-1]

    @property
    def num_tokens(self) -> int:
        return self.tok_starts[-1]

    def tokens_of(self, k: int) -> np.ndarray:
        arr = self._tokens[k]
        if arr is None:
            path = self.store._local_file(self.shards[k]["files"]["tokens"])
            dtype = np.dtype(self.store.manifest["token_dtype"])
            if os.path.getsize(path) == 0:
                arr = np.empty(0, dtype=dtype)
            else:
                # A plain ndarray view of the memmap: slicing np.memmap itself costs a
                # few microseconds per call (subclass hooks), a third of a sequence's budget.
                arr = np.memmap(path, dtype=dtype, mode="r").view(np.ndarray)
            # check_manifest ties the file size to the count; this guards the slicing
            # arithmetic below against any other way the two could disagree.
            if len(arr) != int(self.shards[k]["tokens"]):
                raise CorruptShardError(f"{path}: {len(arr)} tokens, the manifest says {self.shards[k]['tokens']}")
            self._tokens[k] = arr
        return arr

    def offsets_of(self, k: int) -> np.ndarray:
        arr = self._offsets[k]
        if arr is None:
            path = self.store._local_file(self.shards[k]["files"]["index"])
            arr = np.fromfile(path, dtype=np.dtype(self.store.manifest["index_dtype"]))
            self.check_index(k, arr, path)
            self._offsets[k] = arr
        return arr

    def check_index(self, k: int, offsets: np.ndarray, path: str) -> None:
        """Offsets must be documents + 1 values from 0 to the shard's token count, non-decreasing."""
        docs, tokens = int(self.shards[k]["documents"]), int(self.shards[k]["tokens"])
        n = len(offsets)
        bad = n != docs + 1 or offsets[0] != 0 or int(offsets[-1]) != tokens
        # in chunks: a whole-shard diff of a big index would double its memory
        for start in range(0, n - 1 if not bad else 0, 1 << 22):
            chunk = offsets[start:start + (1 << 22) + 1]
            if (chunk[1:] < chunk[:-1]).any():
                bad = True
                break
        if bad:
            raise CorruptShardError(
                f"{path}: the document index does not describe {docs} documents of {tokens} tokens "
                f"({n} offsets, first {offsets[0] if n else None}, last {offsets[-1] if n else None}, "
                "or decreasing); re-run `shammie shard` to rebuild the store")

    def check_text_rows(self, k: int, num_rows: int, path: str) -> None:
        if num_rows != int(self.shards[k]["documents"]):
            raise CorruptShardError(f"{path}: {num_rows} rows, the manifest says {self.shards[k]['documents']} "
                                    "documents; re-run `shammie shard` to rebuild the store")

    def _locate_document(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.num_documents:
            raise IndexError(f"document {i} out of range for domain {self.name!r} ({self.num_documents} documents)")
        k = bisect.bisect_right(self.doc_starts, i) - 1
        return k, i - self.doc_starts[k]

    def document_tokens(self, i: int) -> np.ndarray:
        k, local = self._locate_document(i)
        offsets = self.offsets_of(k)
        return self.tokens_of(k)[int(offsets[local]):int(offsets[local + 1])]

    def _parquet(self, k: int):
        if self._text[k] is None:
            import pyarrow.parquet as pq

            path = self.store._local_file(self.shards[k]["files"]["text"])
            pf = pq.ParquetFile(path)
            self.check_text_rows(k, pf.metadata.num_rows, path)
            starts = [0]
            for g in range(pf.metadata.num_row_groups):
                starts.append(starts[-1] + pf.metadata.row_group(g).num_rows)
            self._text[k] = (pf, starts)
        return self._text[k]

    def _row_group(self, k: int, g: int, columns: list[str] | None):
        key = (k, g, tuple(columns) if columns else None)
        table = self._text_cache.get(key)
        if table is None:
            pf, _ = self._parquet(k)
            table = pf.read_row_group(g, columns=columns)
            self._text_cache[key] = table
            if len(self._text_cache) > _TEXT_CACHE_GROUPS:
                self._text_cache.popitem(last=False)
        else:
            self._text_cache.move_to_end(key)
        return table

    def row(self, i: int, columns: list[str] | None) -> dict[str, Any]:
        k, local = self._locate_document(i)
        _, starts = self._parquet(k)
        g = bisect.bisect_right(starts, local) - 1
        table = self._row_group(k, g, columns)
        return table.slice(local - starts[g], 1).to_pylist()[0]

    def iter_rows(self, columns: list[str] | None) -> Iterator[dict[str, Any]]:
        for k in range(len(self.shards)):
            pf, _ = self._parquet(k)
            for batch in pf.iter_batches(columns=columns):
                yield from batch.to_pylist()

    def sequence_layout(self, seq_len: int) -> dict[str, Any]:
        """Per shard: the sequences that lie wholly inside it, as a zero-copy (rows, seq_len) view.

        Sequence j starts at token j*seq_len of the domain stream, so the sequences inside
        shard k are consecutive rows of one 2-D view of its memmap, starting at row
        first[k]; a batch of them is one fancy-indexing gather instead of a Python loop."""
        layout = self._layouts.get(seq_len)
        if layout is None:
            n = len(self.shards)
            first = np.zeros(n, dtype=np.int64)
            rows = np.zeros(n, dtype=np.int64)
            for k in range(n):
                base, end = self.tok_starts[k], self.tok_starts[k + 1]
                first[k] = -(-base // seq_len)
                rows[k] = max(0, end // seq_len - first[k])
            layout = self._layouts[seq_len] = {"seq_len": seq_len, "first": first, "rows": rows, "views": [None] * n,
                                               "starts": np.asarray(self.tok_starts, dtype=np.int64)}
        return layout

    def sequence_view(self, layout: dict[str, Any], k: int) -> np.ndarray:
        view = layout["views"][k]
        if view is None:
            L, rows = layout["seq_len"], int(layout["rows"][k])
            offset = int(layout["first"][k]) * L - self.tok_starts[k]
            view = layout["views"][k] = self.tokens_of(k)[offset:offset + rows * L].reshape(rows, L)
        return view

    def token_slice(self, start: int, stop: int) -> np.ndarray:
        """tokens[start:stop] of the domain's stream; a zero-copy memmap view unless it spans shards."""
        k = bisect.bisect_right(self.tok_starts, start) - 1
        base = self.tok_starts[k]
        if stop <= self.tok_starts[k + 1]:
            return self.tokens_of(k)[start - base:stop - base]
        pieces = []
        while start < stop:
            end = min(stop, self.tok_starts[k + 1])
            pieces.append(self.tokens_of(k)[start - base:end - base])
            start = end
            k += 1
            base = self.tok_starts[k]
        return np.concatenate(pieces)


class _BatchPlan:
    """Where every row of every batch of `order` comes from, worked out with numpy once per epoch.

    A run is a maximal stretch of one batch reading consecutive rows of one shard (a
    shuffle block is one run unless it crosses a shard end): one slice copy, which reads
    memory sequentially. A group is all rows of one batch that come from one shard: one
    fancy-indexing gather, used when a batch has many short runs (e.g. `shuffle_block=1`).
    Rows spanning two shards have shard -1 and are copied one by one."""

    def __init__(self, d: "_Domain", order: np.ndarray, seq_len: int, batch_size: int):
        self.d, self.order, self.seq_len, self.batch_size = d, order, seq_len, batch_size
        self.layout = layout = d.sequence_layout(seq_len)
        num_shards = len(d.shards)
        n = len(order)
        shard = np.searchsorted(layout["starts"], order * seq_len, side="right") - 1
        local = order - layout["first"][shard]
        shard = np.where(local < layout["rows"][shard], shard, -1)
        batch_of = np.arange(n) // batch_size
        self.num_batches = -(-n // batch_size)

        new_run = np.ones(n, dtype=bool)
        new_run[1:] = ((order[1:] != order[:-1] + 1) | (shard[1:] != shard[:-1]) | (shard[1:] < 0)
                       | (batch_of[1:] != batch_of[:-1]))
        starts = np.flatnonzero(new_run)
        length = np.diff(np.append(starts, n))
        row = starts - batch_of[starts] * batch_size
        # (first row in batch, end row, shard, first shard row, end shard row)
        self.runs = list(zip(row.tolist(), (row + length).tolist(), shard[starts].tolist(),
                             local[starts].tolist(), (local[starts] + length).tolist()))
        runs_per_batch = np.bincount(batch_of[starts], minlength=self.num_batches)
        self.run_offsets = np.r_[0, np.cumsum(runs_per_batch)].tolist()
        self.few_runs = (runs_per_batch <= max(1, batch_size // 4)).tolist()

        by_group = np.argsort(batch_of * (num_shards + 1) + shard, kind="stable")
        key = batch_of[by_group] * (num_shards + 1) + shard[by_group]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        self.groups = list(zip(starts.tolist(), np.append(starts[1:], n).tolist(), shard[by_group[starts]].tolist()))
        groups_per_batch = np.bincount(batch_of[by_group[starts]], minlength=self.num_batches)
        self.group_offsets = np.r_[0, np.cumsum(groups_per_batch)].tolist()
        self.group_rows = local[by_group]
        self.group_pos = by_group - batch_of[by_group] * batch_size
        self.group_seq = order[by_group]

    def fill(self, b: int, out: np.ndarray) -> np.ndarray:
        """Copy batch `b`'s sequences into `out` (converting to out's dtype)."""
        d, layout, L = self.d, self.layout, self.seq_len
        if self.few_runs[b]:
            start = b * self.batch_size
            for lo, hi, k, first, end in self.runs[self.run_offsets[b]:self.run_offsets[b + 1]]:
                if k < 0:
                    j = int(self.order[start + lo])
                    out[lo] = d.token_slice(j * L, (j + 1) * L)
                else:
                    out[lo:hi] = d.sequence_view(layout, k)[first:end]
            return out
        for lo, hi, k in self.groups[self.group_offsets[b]:self.group_offsets[b + 1]]:
            if k < 0:
                for pos, j in zip(self.group_pos[lo:hi].tolist(), self.group_seq[lo:hi].tolist()):
                    out[pos] = d.token_slice(j * L, (j + 1) * L)
            else:
                out[self.group_pos[lo:hi]] = d.sequence_view(layout, k)[self.group_rows[lo:hi]]
        return out


class SequenceReader:
    """Copies sequences of one domain into rows of a batch with as little per-row Python as
    possible, for readers that take a few random sequences at a time (MixtureDataset).

    It uses the batch path's layout (each shard's whole sequences as one zero-copy
    (rows, seq_len) view): rows in one shard -- every row when the domain has one shard,
    as domains under 128 M tokens do -- are one fancy-indexing copy; rows spread over
    shards are copied from those views one by one, or with `gather()` from
    GATHER_MIN_ROWS rows (its plan has a fixed ~0.07 ms cost: benchmarks/odm_read_rate.py);
    a row that crosses a shard end is read from the token stream."""

    GATHER_MIN_ROWS = 128

    def __init__(self, domain: "_Domain", seq_len: int, gather: Callable[[np.ndarray], np.ndarray]):
        self.domain, self.seq_len, self._gather = domain, int(seq_len), gather
        self.layout = layout = domain.sequence_layout(self.seq_len)
        self.starts, self.first, self.rows = layout["starts"], layout["first"], layout["rows"]
        self.single = self._view(0) if len(self.first) == 1 else None

    def _view(self, k: int) -> np.ndarray:
        return self.domain.sequence_view(self.layout, k).view(np.ndarray)

    def read(self, idx: np.ndarray, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        """out[rows] = sequences idx (rows None: all of out, in order)."""
        where = rows if rows is not None else slice(None)
        if self.single is not None:
            out[where] = self.single[idx]
            return
        L = self.seq_len
        shard = np.searchsorted(self.starts, idx * L, side="right") - 1
        local = idx - self.first[shard]
        k0 = int(shard[0])
        if (shard == k0).all() and (local < self.rows[k0]).all():
            out[where] = self._view(k0)[local]
            return
        if len(idx) >= self.GATHER_MIN_ROWS:
            out[where] = self._gather(idx)
            return
        positions = range(len(idx)) if rows is None else rows.tolist()
        inside = local < self.rows[shard]
        for r, k, i, ok, j in zip(positions, shard.tolist(), local.tolist(), inside.tolist(), idx.tolist()):
            out[r] = self._view(k)[i] if ok else self.domain.token_slice(j * L, (j + 1) * L)


class ShardStore:
    """A read-only view of one published build of a store: the manifest as of `open_store`
    (or the build `build_id` names), pinned for the life of the object and its pickles."""

    def __init__(self, url: str, cache_dir: str | None = None, *, build_id: str | None = None,
                 manifest: dict[str, Any] | None = None):
        self.url = storage.strip_file_scheme(url).rstrip("/")
        self.remote = storage.is_remote(self.url)
        if manifest is None:
            manifest = self._read_manifest(build_id)
        else:
            manifest = fmt.check_manifest(manifest, f"pinned manifest of {self.url}")
        if build_id is not None and manifest["build_id"] != build_id:
            raise ManifestError(f"{self.url}: asked for build {build_id}, the manifest is build {manifest['build_id']}")
        self.manifest = manifest
        self.cache_dir = cache_dir
        if self.remote:
            base = cache_dir or default_cache_dir()
            self._cache_root = os.path.join(base, hashlib.sha1(self.url.encode()).hexdigest()[:16])
        else:
            self._cache_root = None
        self._verified: dict[str, str] = {}
        self._domains = {name: _Domain(self, name, entry) for name, entry in sorted(manifest["domains"].items())}
        self._tokenizer = None

    def _read_manifest(self, build_id: str | None) -> dict[str, Any]:
        current_url = storage.join(self.url, fmt.MANIFEST)
        manifest_url = current_url
        try:
            manifest = storage.read_json(manifest_url)
            if build_id is not None and (manifest is None or manifest.get("build_id") != build_id):
                # An older build that is still kept: its manifest is in the build records.
                manifest_url = storage.join(self.url, fmt.build_record_name(build_id))
                manifest = storage.read_json(manifest_url)
                if manifest is None:
                    raise BuildRemovedError(f"{self.url} has no build {build_id} any more (a store keeps the files "
                                            f"of its newest builds only, {fmt.DEFAULT_KEEP_BUILDS} by default); "
                                            "open the current one")
        except StoreError:
            raise
        except (OSError, ValueError) as e:
            raise ManifestError(f"cannot read {manifest_url}: {e}") from None
        if manifest is None:
            raise ManifestError(f"{self.url} is not a shard store (no {fmt.MANIFEST}); build one with `shammie shard`")
        return fmt.check_manifest(manifest, manifest_url)

    @property
    def build_id(self) -> str:
        """The build this reader is pinned to (file names carry it; a rebuild gets a new one)."""
        return self.manifest["build_id"]

    def __repr__(self) -> str:
        return (f"ShardStore({self.url!r}, build {self.build_id}, {len(self._domains)} domains, "
                f"{self.manifest['documents']} documents, {self.manifest['tokens']} tokens)")

    # Picklable for DataLoader workers started with spawn: they get the pinned manifest
    # (not whatever manifest.json says when they start: a rebuild in between would give
    # them other sizes than the parent's) and open and verify files themselves, never
    # sharing file handles.
    def __getstate__(self):
        return {"url": self.url, "cache_dir": self.cache_dir, "manifest": self.manifest}

    def __setstate__(self, state):
        self.__init__(state["url"], state["cache_dir"], manifest=state["manifest"])

    # ------------------------------------------------------------ files
    def _verify(self, path: str, entry: dict[str, Any], shown: str) -> None:
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise CorruptShardError(
                f"{shown}: {size} bytes, the manifest says {entry['bytes']} (truncated or overwritten); "
                "re-run `shammie shard` to rebuild the store")
        actual = fmt.file_checksum(path)
        if actual != entry["checksum"]:
            raise CorruptShardError(f"{shown}: checksum {actual} does not match the manifest's {entry['checksum']}; "
                                    "re-run `shammie shard` to rebuild the store")

    def _local_file(self, entry: dict[str, Any]) -> str:
        """Local path of a manifest file entry, downloaded (remote) and verified on first use."""
        rel = entry["path"]
        done = self._verified.get(rel)
        if done is not None:
            return done
        if not self.remote:
            path = os.path.join(self.url, *rel.split("/"))
            if not os.path.exists(path):
                self._missing(path)
            self._verify(path, entry, path)
        else:
            path = self._fetch(entry)
        self._verified[rel] = path
        return path

    def _fetch(self, entry: dict[str, Any]) -> str:
        rel = entry["path"]
        remote = storage.join(self.url, rel)
        local = os.path.join(self._cache_root, *rel.split("/"))
        if os.path.exists(local):
            try:
                self._verify(local, entry, local)
                return local
            except CorruptShardError:
                os.unlink(local)  # a damaged cache entry: fetch it again
        os.makedirs(os.path.dirname(local), exist_ok=True)
        fs, path = storage.get_fs(remote)
        tmp = f"{local}.part-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            try:
                fs.get_file(path, tmp)
            except FileNotFoundError:
                self._missing(remote)
            self._verify(tmp, entry, remote)
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return local

    def _missing(self, shown: str):
        """A listed file is absent: say whether later rebuilds removed this reader's build."""
        try:
            current = storage.read_json(storage.join(self.url, fmt.MANIFEST)) or {}
            recorded = storage.exists(storage.join(self.url, fmt.build_record_name(self.build_id)))
        except (OSError, ValueError):
            current, recorded = {}, True
        if isinstance(current, dict) and current.get("build_id") not in (None, self.build_id) and not recorded:
            raise BuildRemovedError(
                f"{shown}: build {self.build_id} of {self.url}, which this reader opened, has been removed by later "
                f"rebuilds (the store now serves build {current.get('build_id')}; it keeps the files of its newest "
                f"builds only, {fmt.DEFAULT_KEEP_BUILDS} by default). Files already opened stay readable; re-open the store to read "
                "the current build")
        raise CorruptShardError(f"{shown}: listed in the manifest but missing; re-run `shammie shard`")

    def verify(self) -> int:
        """Check every file of the store now (size, checksum, and that token, index and text files
        hold the documents and tokens the manifest counts); returns the number of files checked."""
        import pyarrow.parquet as pq

        n = 0
        for domain in self._domains.values():
            for k, shard in enumerate(domain.shards):
                for entry in shard["files"].values():
                    self._local_file(entry)
                    n += 1
                # Token files: their size is checked against the count (check_manifest ties
                # bytes to tokens). Index and text are read here without keeping them open
                # or cached, so verifying a large store holds no file handles afterwards.
                files = shard["files"]
                path = self._local_file(files["index"])
                domain.check_index(k, np.memmap(path, dtype=np.dtype(self.manifest["index_dtype"]), mode="r"), path)
                path = self._local_file(files["text"])
                domain.check_text_rows(k, pq.read_metadata(path).num_rows, path)
        self._local_file(self.manifest["tokenizer"])
        return n + 1

    # ------------------------------------------------------------ domains
    def _domain(self, domain: str) -> _Domain:
        try:
            return self._domains[domain]
        except KeyError:
            raise KeyError(f"no domain {domain!r} in {self.url}; domains: {', '.join(self._domains)}") from None

    @property
    def domains(self) -> list[str]:
        return list(self._domains)

    def num_documents(self, domain: str) -> int:
        return self._domain(domain).num_documents

    def num_tokens(self, domain: str) -> int:
        return self._domain(domain).num_tokens

    def domain_info(self, domain: str) -> dict[str, Any]:
        return self._domain(domain).entry

    def sizes(self) -> dict[str, dict[str, int]]:
        return {d: {"documents": v.num_documents, "tokens": v.num_tokens} for d, v in self._domains.items()}

    @property
    def seq_len(self) -> int:
        """The default sequence length chosen at build time (readers may use any)."""
        return int(self.manifest["seq_len"])

    # ------------------------------------------------------------ documents
    def document(self, domain: str, i: int) -> str:
        return self._domain(domain).row(i, ["text"])["text"]

    def document_record(self, domain: str, i: int) -> dict[str, Any]:
        """All stored columns of document i (id, text, url, ..., n_tokens)."""
        return self._domain(domain).row(i, None)

    def iter_documents(self, domain: str, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of a domain in store order (streams the Parquet shards)."""
        return self._domain(domain).iter_rows(columns)

    def document_tokens(self, domain: str, i: int) -> np.ndarray:
        """Token ids of document i, ending with `eod_id` (a read-only memmap view)."""
        return self._domain(domain).document_tokens(i)

    # ------------------------------------------------------------ packed sequences
    def num_sequences(self, domain: str, seq_len: int) -> int:
        _check_seq_len(seq_len)
        return self._domain(domain).num_tokens // seq_len

    def sequence(self, domain: str, seq_len: int, j: int, dtype: Any = None) -> np.ndarray:
        """Tokens [j*seq_len, (j+1)*seq_len) of the domain's stream, in the stored dtype unless `dtype`."""
        d = self._domain(domain)
        n = self.num_sequences(domain, seq_len)
        if not 0 <= j < n:
            raise IndexError(f"sequence {j} out of range for domain {domain!r} ({n} sequences of {seq_len})")
        out = d.token_slice(j * seq_len, (j + 1) * seq_len)
        return out if dtype is None else out.astype(dtype)

    def sequence_order(self, domain: str, seq_len: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                       rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1,
                       drop_last: bool = False, shuffle_block: int | None = None) -> np.ndarray:
        """Sequence indices of one (rank, worker) partition, in the order `sequences` yields them.

        The shuffle permutes blocks of `shuffle_block` consecutive sequences (default:
        `auto_shuffle_block`); each partition then takes one contiguous range of that
        order. All partitions together cover every index exactly once and differ in
        length by at most one; `drop_last` trims each to the same length (what lock-step
        data-parallel training wants)."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if num_workers < 1 or not 0 <= worker_id < num_workers:
            raise ValueError(f"worker_id {worker_id} is not in [0, num_workers={num_workers})")
        n = self.num_sequences(domain, seq_len)
        if shuffle:
            block = auto_shuffle_block(n, seq_len) if shuffle_block is None else int(shuffle_block)
            if block < 1:
                raise ValueError(f"shuffle_block must be >= 1, not {shuffle_block}")
            rng = np.random.default_rng([seed, epoch, zlib.crc32(domain.encode())])
            if block == 1:
                order = rng.permutation(n)
            else:
                order = (rng.permutation(-(-n // block))[:, None] * block + np.arange(block)).reshape(-1)
                order = order[order < n]  # the last block may be partial
        else:
            order = np.arange(n)
        # Contiguous ranges rather than a stride: a stride would split every block
        # across partitions and undo the locality the blocks exist for.
        parts = world_size * num_workers
        p = rank * num_workers + worker_id
        mine = order[n * p // parts:n * (p + 1) // parts]
        if drop_last:
            mine = mine[: n // parts]
        return mine

    def sequences(self, domain: str, seq_len: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True,
                  rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1,
                  drop_last: bool = False, shuffle_block: int | None = None, dtype: Any = None) -> Iterator[np.ndarray]:
        """This partition's share of the seeded, block-shuffled order of the domain's sequences."""
        order = self.sequence_order(domain, seq_len, seed=seed, epoch=epoch, shuffle=shuffle, rank=rank,
                                    world_size=world_size, worker_id=worker_id, num_workers=num_workers,
                                    drop_last=drop_last, shuffle_block=shuffle_block)
        return self._iter_sequences(self._domain(domain), seq_len, order, dtype)

    def sequence_reader(self, domain: str, seq_len: int) -> "SequenceReader":
        """A reader of the domain's sequences for small random batches (see SequenceReader)."""
        return SequenceReader(self._domain(domain), seq_len, lambda idx: self.gather(domain, seq_len, idx))

    def gather(self, domain: str, seq_len: int, indices, dtype: Any = np.int64, out: np.ndarray | None = None) -> np.ndarray:
        """Sequences `indices` of a domain as one (len(indices), seq_len) array (a copy, `dtype`)."""
        d = self._domain(domain)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.num_sequences(domain, seq_len)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"sequence index out of range for domain {domain!r} ({n} sequences of {seq_len})")
        if out is None:
            out = np.empty((idx.size, seq_len), dtype=dtype)
        if idx.size:
            _BatchPlan(d, idx, seq_len, idx.size).fill(0, out)
        return out

    def batches(self, domain: str, seq_len: int, batch_size: int, *, seed: int = 0, epoch: int = 0,
                shuffle: bool = True, rank: int = 0, world_size: int = 1, worker_id: int = 0, num_workers: int = 1,
                drop_last: bool = False, shuffle_block: int | None = None, dtype: Any = np.int64,
                reuse_buffer: bool = False) -> Iterator[np.ndarray]:
        """`sequences()` in (batch_size, seq_len) arrays (the last one may be shorter); same order.

        The fast path for loaders: where each batch's rows come from is worked out once
        per epoch (`_BatchPlan`), then a batch is one slice copy per shuffle block.
        `reuse_buffer=True` fills one array again for every batch (valid until the next
        one): a fresh 0.5 MB array per batch costs page faults comparable to the copy itself."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        order = self.sequence_order(domain, seq_len, seed=seed, epoch=epoch, shuffle=shuffle, rank=rank,
                                    world_size=world_size, worker_id=worker_id, num_workers=num_workers,
                                    drop_last=drop_last, shuffle_block=shuffle_block)
        if not len(order):
            return
        plan = _BatchPlan(self._domain(domain), order, seq_len, batch_size)
        buffer = np.empty((batch_size, seq_len), dtype=dtype) if reuse_buffer else None
        for b in range(plan.num_batches):
            rows = min(batch_size, len(order) - b * batch_size)
            yield plan.fill(b, np.empty((rows, seq_len), dtype=dtype) if buffer is None else buffer[:rows])

    @staticmethod
    def _iter_sequences(d: _Domain, seq_len: int, order: np.ndarray, dtype: Any) -> Iterator[np.ndarray]:
        # The hot loop of training-time reading: plain lists and bisect beat numpy
        # scalar calls, and a sequence inside one shard is a zero-copy memmap view.
        # Shards are opened (fetched, verified) only when a sequence first needs them.
        tok_starts = d.tok_starts
        arrays: list[np.ndarray | None] = [None] * len(d.shards)
        for j in order.tolist():
            start = j * seq_len
            stop = start + seq_len
            k = bisect.bisect_right(tok_starts, start) - 1
            if stop <= tok_starts[k + 1]:
                arr = arrays[k]
                if arr is None:
                    arr = arrays[k] = d.tokens_of(k)
                base = tok_starts[k]
                out = arr[start - base:stop - base]
            else:
                out = d.token_slice(start, stop)
            yield out if dtype is None else out.astype(dtype)

    # ------------------------------------------------------------ tokenizer
    @property
    def vocab_size(self) -> int:
        return int(self.manifest["tokenizer"]["vocab_size"])

    @property
    def eod_id(self) -> int:
        return int(self.manifest["tokenizer"]["eod_id"])

    @property
    def token_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["token_dtype"])

    @property
    def tokenizer_path(self) -> str:
        """Local path of the store's sentencepiece model (downloaded and verified if remote)."""
        return self._local_file(self.manifest["tokenizer"])

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from shammie.mixing.tokenizer import Tokenizer

            with open(self.tokenizer_path, "rb") as f:
                self._tokenizer = Tokenizer(f.read(), source=self.tokenizer_path)
        return self._tokenizer

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)


AUTO_SHUFFLE_BLOCK_TOKENS = 16384
AUTO_SHUFFLE_MIN_BLOCKS = 1024


def auto_shuffle_block(num_sequences: int, seq_len: int) -> int:
    """Sequences per shuffle unit: about 16384 tokens, yet never fewer than 1024 units.

    Copying 4 KB rows from random places runs at about half the rate of a streaming
    copy even in bare numpy; through `batches()`, single sequences read at ~0.35 of it,
    blocks of 4 (16 KB) at 0.5-0.8 and blocks of 8 (32 KB, 16384 uint16 tokens) at
    0.7-0.9 (docs/benchmarks/store.md). Keeping at least 1024 units per domain means
    small domains still get a per-sequence shuffle."""
    return max(1, min(AUTO_SHUFFLE_BLOCK_TOKENS // seq_len, num_sequences // AUTO_SHUFFLE_MIN_BLOCKS))


def _check_seq_len(seq_len: int) -> None:
    if int(seq_len) < 1:
        raise ValueError(f"seq_len must be >= 1, not {seq_len}")


def open_store(path_or_url: str, cache_dir: str | None = None, *, build_id: str | None = None) -> ShardStore:
    """Open a published store (local path or s3://), pinned to its current build or to `build_id`
    (one of the builds the store still keeps, e.g. the one a checkpoint was trained on).

    Raises ManifestError when there is no valid manifest, BuildRemovedError when `build_id` is gone."""
    return ShardStore(path_or_url, cache_dir=cache_dir, build_id=build_id)


def same_build_across_ranks(store: ShardStore, group: Any = None) -> ShardStore:
    """`store` pinned to the build rank 0 of `group` has open, on every rank (a collective call).

    Ranks open a store independently; a rebuild between their `open_store` calls would pin
    them to different builds, with different sizes, and their sampling would no longer be
    disjoint. Rank 0 broadcasts its build id; a rank pinned to another build re-opens the
    store at rank 0's (kept for one rebuild, `BuildRemovedError` beyond). Without an
    initialised torch.distributed this returns `store` unchanged."""
    try:
        import torch.distributed as dist
    except ImportError:
        return store
    if not (dist.is_available() and dist.is_initialized()):
        return store
    chosen = [store.build_id]
    dist.broadcast_object_list(chosen, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    if chosen[0] == store.build_id:
        return store
    return ShardStore(store.url, cache_dir=store.cache_dir, build_id=chosen[0])


def build_store(job: str, store: str | None = None, *, group_by: str = "edu", tokenizer: str | None = None,
                train_tokenizer: int | None = None, tokenizer_type: str = "bpe", seq_len: int = fmt.DEFAULT_SEQ_LEN,
                top_k: int | None = None, input_stage: str | None = None, workers: int | None = None,
                ray_address: str | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Build the store from `job`'s documents; see `shammie.mixing.store_build` (options: shard_tokens,
    tokenizer_sample_bytes). `top_k=None` means 100 for `site` and no folding otherwise."""
    from shammie.mixing.shard_stage import build_store as _build

    return _build(job, store, group_by=group_by, tokenizer=tokenizer, train_tokenizer=train_tokenizer,
                  tokenizer_type=tokenizer_type, seq_len=seq_len, top_k=top_k, input_stage=input_stage,
                  workers=workers, ray_address=ray_address, progress=progress, **options)
