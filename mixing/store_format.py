"""The on-disk format of a shard store (shared by the writer and the reader).

    STORE/manifest.json                 written last; the only entry point for readers
    STORE/tokenizer-<sha12>.model       the sentencepiece model the tokens were made with
    STORE/<domain>/<stem>.parquet       text shard: the input rows (+ n_tokens), in store order
    STORE/<domain>/<stem>.tokens        token shard: flat little-endian uint16/uint32 token ids
    STORE/<domain>/<stem>.index         uint64 offsets (n_documents + 1) of document boundaries in .tokens

The three files of a shard hold the same documents in the same order; the manifest
lists a domain's shards in store order. Stems (readers never parse them, they follow
the manifest):
    <build>-<k:05d>               shard k, written by StoreWriter (stores written from token arrays,
                                  and by `shard` before it assembled stores in its workers)
    <build>-<task:06d>-<j:04d>    piece j of one tokenize task's share of the domain (`shard`)
    <build>-<task:06d>-<j:04d>-m  consecutive small pieces merged, named after the first one
File names carry the build id, so a new build never overwrites a file the current
manifest points at: a crash at any point leaves the previous store readable.
Checksums are xxh3-128 (xxhash): fast enough (~10 GB/s) to verify every shard when
it is first opened, which sha256 (~1 GB/s here) would make noticeable.

Builds: every published manifest is also kept as `STORE/_builds/<build_id>.json`, so
a reader can pin the build it opened and the writer knows which builds' files to
keep (`DEFAULT_KEEP_BUILDS`, see `store_writer.collect_garbage`).

Errors: the store raises `StoreError` (a `ValueError` and a `ShammieError`) and its
subclasses, never the CLI's `UserError`; the `shammie` command turns them into a
one-line message and exit code 2.
"""

from __future__ import annotations

import re
from typing import Any

import xxhash

from shammie.pipeline.errors import ShammieError

FORMAT = "shammie-shard-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
STAGING = "_staging"
INDEX_DTYPE = "<u8"
CHECKSUM_ALGO = "xxh3_128"
HASH_CHUNK = 8 << 20
# Copies of published manifests, one per build: `_builds/<build_id>.json`.
BUILDS = "_builds"
# How many published builds keep their files: the current one and the one before, so a
# reader (or a DataLoader worker started later) that opened the previous build still
# finds every file it lists after one rebuild.
DEFAULT_KEEP_BUILDS = 2
DEFAULT_SEQ_LEN = 2048  # tokens per packed training sequence unless a reader or `shard --seq-len` says otherwise
TOKEN_DTYPES = ("<u2", "<u4")

# Files a build may own (old builds' files are garbage-collected after a new manifest lands):
# temporaries, the three files of a shard under any of the stems above, tokenizer models.
OWNED_FILE = re.compile(r"^(\.tmp-.*|[0-9a-f]{12}-(\d{5}|\d{6,}-\d{4,}(-m)?)\.(parquet|tokens|index)"
                        r"|tokenizer-[0-9a-f]{12}\.model)$")
SHARD_KINDS = {"text": "parquet", "tokens": "tokens", "index": "index"}


class StoreError(ShammieError, ValueError):
    """A shard store cannot be built or read as asked (bad option, missing or malformed store)."""


class ManifestError(StoreError):
    """`manifest.json` (or a build record) is missing, unreadable, malformed or inconsistent."""


class CorruptShardError(StoreError):
    """A shard file does not match the manifest (truncated, overwritten or damaged)."""


class BuildRemovedError(StoreError):
    """The build a reader pinned has been garbage-collected by later rebuilds."""


class TokenizerError(StoreError):
    """A tokenizer model or tokenizer option is unusable."""


def build_record_name(build_id: str) -> str:
    return f"{BUILDS}/{build_id}.json"


def shard_stem(build_id: str, k: int) -> str:
    """Shard k of a domain as StoreWriter names it."""
    return f"{build_id}-{k:05d}"


def shard_names(build_id: str, k: int) -> dict[str, str]:
    return stem_names(shard_stem(build_id, k))


def piece_stem(build_id: str, task: int, j: int) -> str:
    """Piece j of tokenize task `task`'s share of a domain (see the module docstring)."""
    return f"{build_id}-{task:06d}-{j:04d}"


def merged_stem(build_id: str, task: int, j: int) -> str:
    """The shard that merges consecutive small pieces, the first of which is piece (task, j)."""
    return f"{piece_stem(build_id, task, j)}-m"


def stem_names(stem: str) -> dict[str, str]:
    return {kind: f"{stem}.{ext}" for kind, ext in SHARD_KINDS.items()}


def tokenizer_name(sha256: str) -> str:
    return f"tokenizer-{sha256[:12]}.model"


def new_hasher():
    return xxhash.xxh3_128()


def checksum_string(hasher) -> str:
    return f"{CHECKSUM_ALGO}:{hasher.hexdigest()}"


def file_checksum(path: str, opener=open) -> str:
    """Checksum of a local file (or of any file `opener(path, "rb")` opens: an fsspec filesystem's `open`)."""
    h = new_hasher()
    with opener(path, "rb") as f:
        while True:
            chunk = f.read(HASH_CHUNK)
            if not chunk:
                break
            h.update(chunk)
    return checksum_string(h)


def bytes_checksum(data: bytes) -> str:
    h = new_hasher()
    h.update(data)
    return checksum_string(h)


# ---------------------------------------------------------------- manifest validation

_FILE_KEYS = {"path": str, "bytes": int, "checksum": str}


def _fail(where: str, key: str, problem: str):
    raise ManifestError(f"{where}: {key} {problem}; the store is damaged or was written by another tool, "
                        "re-run `shammie shard` to rebuild it")


def _field(obj: dict, key: str, kind, where: str, prefix: str, *, minimum: int | None = None):
    shown = f"{prefix}{key}"
    if key not in obj:
        _fail(where, shown, "is missing")
    value = obj[key]
    # bool is an int in Python; a count of True is a malformed manifest, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        _fail(where, shown, f"should be {kind.__name__}, not {type(value).__name__} ({value!r:.60})")
    if minimum is not None and value < minimum:
        _fail(where, shown, f"should be >= {minimum}, not {value}")
    return value


def _check_file(entry: Any, where: str, prefix: str) -> None:
    if not isinstance(entry, dict):
        _fail(where, prefix.rstrip("."), f"should be an object, not {type(entry).__name__}")
    for key, kind in _FILE_KEYS.items():
        _field(entry, key, kind, where, prefix, minimum=0 if kind is int else None)
    path = entry["path"]
    parts = path.split("/")
    # A manifest names files inside the store only: no absolute paths, no `..`.
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        _fail(where, f"{prefix}path", f"is not a relative path inside the store ({path!r})")


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """Check the shape and the internal arithmetic of a manifest; raise ManifestError naming the first problem.

    Counts must add up (shards -> domain -> store), so a manifest edited or written by
    mistake is refused when the store is opened, before any sequence is read."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: not a JSON object but {type(manifest).__name__}; not a shard store manifest")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{where}: unsupported store format {manifest.get('format')!r} "
                            f"version {manifest.get('format_version')!r} (this reader knows {FORMAT!r} {FORMAT_VERSION})")
    build_id = _field(manifest, "build_id", str, where, "")
    if not re.fullmatch(r"[0-9a-f]{12}", build_id):
        _fail(where, "build_id", f"should be 12 hex digits, not {build_id!r}")
    tok = _field(manifest, "tokenizer", dict, where, "")
    _check_file(tok, where, "tokenizer.")
    _field(tok, "vocab_size", int, where, "tokenizer.", minimum=1)
    _field(tok, "eod_id", int, where, "tokenizer.", minimum=0)
    if _field(manifest, "token_dtype", str, where, "") not in TOKEN_DTYPES:
        _fail(where, "token_dtype", f"should be one of {TOKEN_DTYPES}, not {manifest['token_dtype']!r}")
    if _field(manifest, "index_dtype", str, where, "") != INDEX_DTYPE:
        _fail(where, "index_dtype", f"should be {INDEX_DTYPE!r}, not {manifest['index_dtype']!r}")
    _field(manifest, "seq_len", int, where, "", minimum=1)
    domains = _field(manifest, "domains", dict, where, "")
    total_docs = total_tokens = 0
    for name, entry in domains.items():
        prefix = f"domains[{name!r}]."
        if not isinstance(entry, dict):
            _fail(where, prefix.rstrip("."), f"should be an object, not {type(entry).__name__}")
        shards = _field(entry, "shards", list, where, prefix)
        docs = tokens = 0
        for k, shard in enumerate(shards):
            sp = f"{prefix}shards[{k}]."
            if not isinstance(shard, dict):
                _fail(where, sp.rstrip("."), f"should be an object, not {type(shard).__name__}")
            docs += _field(shard, "documents", int, where, sp, minimum=0)
            tokens += _field(shard, "tokens", int, where, sp, minimum=0)
            files = _field(shard, "files", dict, where, sp)
            for kind in ("text", "tokens", "index"):
                if kind not in files:
                    _fail(where, f"{sp}files.{kind}", "is missing")
                _check_file(files[kind], where, f"{sp}files.{kind}.")
            # Token and index files are raw arrays: their sizes follow from the counts.
            want = shard["tokens"] * int(manifest["token_dtype"][-1])
            if files["tokens"]["bytes"] != want:
                _fail(where, f"{sp}files.tokens.bytes", f"is {files['tokens']['bytes']}, but {shard['tokens']} "
                      f"tokens of {manifest['token_dtype']} take {want}")
            want = (shard["documents"] + 1) * 8
            if files["index"]["bytes"] != want:
                _fail(where, f"{sp}files.index.bytes", f"is {files['index']['bytes']}, but {shard['documents']} "
                      f"documents need {want} (documents + 1 offsets of {INDEX_DTYPE})")
        for key, value in (("documents", docs), ("tokens", tokens)):
            if _field(entry, key, int, where, prefix, minimum=0) != value:
                _fail(where, f"{prefix}{key}", f"is {entry[key]} but its shards add up to {value}")
        total_docs += docs
        total_tokens += tokens
    for key, value in (("documents", total_docs), ("tokens", total_tokens)):
        if _field(manifest, key, int, where, "", minimum=0) != value:
            _fail(where, key, f"is {manifest[key]} but the domains add up to {value}")
    return manifest
