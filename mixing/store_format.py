"""The on-disk format of a shard store (shared by the writer and the reader).

    STORE/manifest.json                 written last; the only entry point for readers
    STORE/tokenizer-<sha12>.model       the sentencepiece model the tokens were made with
    STORE/<domain>/<build>-<k>.parquet  text shard k: the input rows (+ n_tokens), in store order
    STORE/<domain>/<build>-<k>.tokens   token shard k: flat little-endian uint16/uint32 token ids
    STORE/<domain>/<build>-<k>.index    uint64 offsets (n_documents + 1) of document boundaries in .tokens

Text shard k, token shard k and index k hold the same documents in the same order.
File names carry the build id, so a new build never overwrites a file the current
manifest points at: a crash at any point leaves the previous store readable.
Checksums are xxh3-128 (xxhash): fast enough (~10 GB/s) to verify every shard when
it is first opened, which sha256 (~1 GB/s here) would make noticeable.
"""

from __future__ import annotations

import re

import xxhash

FORMAT = "shammie-shard-store"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
STAGING = "_staging"
INDEX_DTYPE = "<u8"
CHECKSUM_ALGO = "xxh3_128"
HASH_CHUNK = 8 << 20

# Files a build may own (old builds' files are garbage-collected after a new manifest lands).
OWNED_FILE = re.compile(r"^(\.tmp-.*|[0-9a-f]{12}-\d{5}\.(parquet|tokens|index)|tokenizer-[0-9a-f]{12}\.model)$")


def shard_names(build_id: str, k: int) -> dict[str, str]:
    stem = f"{build_id}-{k:05d}"
    return {"text": f"{stem}.parquet", "tokens": f"{stem}.tokens", "index": f"{stem}.index"}


def tokenizer_name(sha256: str) -> str:
    return f"tokenizer-{sha256[:12]}.model"


def new_hasher():
    return xxhash.xxh3_128()


def checksum_string(hasher) -> str:
    return f"{CHECKSUM_ALGO}:{hasher.hexdigest()}"


def file_checksum(path: str) -> str:
    h = new_hasher()
    with open(path, "rb") as f:
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
