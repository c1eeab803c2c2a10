"""Paths that may be local or remote (`s3://`, `hf://`, ...), through fsspec.

Every stage writes through `atomic_write`/`write_bytes_atomic`, so a reader (or a
retried Ray task) never sees a half-written file: locally we write a temporary
file beside the target and `os.replace` it; object stores make a PUT visible
only when it completes.

S3 endpoint: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) points boto3/s3fs at
any S3-compatible service (MinIO, moto). `SHAMMIE_S3_ANON=1` forces unsigned
requests; the public `commoncrawl` bucket is read unsigned when no credentials
are configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import fsspec

# Read once: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0)
os.umask(_UMASK)


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def strip_file_scheme(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_storage_options(anon: bool | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    endpoint = s3_endpoint()
    if endpoint:
        opts["client_kwargs"] = {"endpoint_url": endpoint}
    if anon is None:
        anon = os.environ.get("SHAMMIE_S3_ANON") == "1"
    if anon:
        opts["anon"] = True
    return opts


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Filesystem and in-filesystem path for a URL or local path."""
    url = strip_file_scheme(url)
    if url.startswith("s3://"):
        # Common Crawl's bucket is public: read it unsigned, so no AWS account is needed.
        anon = True if url.startswith("s3://commoncrawl/") and os.environ.get("SHAMMIE_CC_SIGNED") != "1" else None
        fs = fsspec.filesystem("s3", **s3_storage_options(anon=anon))
        return fs, url[len("s3://"):]
    if is_remote(url):
        fs, path = fsspec.core.url_to_fs(url)
        return fs, path
    return fsspec.filesystem("file"), os.path.abspath(url)


def join(base: str, *parts: str) -> str:
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def exists(url: str) -> bool:
    fs, path = get_fs(url)
    return fs.exists(path)


def listdir(url: str) -> list[str]:
    """Names (not paths) of the entries directly inside a folder; [] when it does not exist."""
    fs, path = get_fs(url)
    if not fs.exists(path):
        return []
    fs.invalidate_cache(path)
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False))


def list_sizes(url: str) -> dict[str, int]:
    """Name -> size in bytes of the files directly inside a folder; {} when it does not exist."""
    fs, path = get_fs(url)
    if not fs.exists(path):
        return {}
    fs.invalidate_cache(path)
    return {posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0)
            for e in fs.ls(path, detail=True) if e.get("type") != "directory"}


def file_fingerprint(url: str, checksum: bool = True) -> dict[str, Any] | None:
    """What identifies a file's content: its size, plus an xxh3-64 checksum of its bytes for
    local files (GB/s, so markers can be checked on every resume) or the object store's
    ETag for remote ones (reading them back would cost a download). None if it is missing."""
    fs, path = get_fs(url)
    try:
        info = fs.info(path)
    except (FileNotFoundError, OSError):
        return None
    out: dict[str, Any] = {"size": int(info.get("size") or 0)}
    if not is_remote(url):
        if checksum:
            import xxhash

            h = xxhash.xxh3_64()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            out["xxh3"] = h.hexdigest()
    else:
        tag = info.get("ETag") or info.get("etag")
        if tag:
            out["etag"] = str(tag).strip('"')
    return out


def read_bytes(url: str) -> bytes:
    fs, path = get_fs(url)
    with fs.open(path, "rb") as f:
        return f.read()


def read_json(url: str, default: Any = None) -> Any:
    """The parsed JSON at `url`, or `default` when there is no file; a damaged file is a ValueError naming it."""
    if not exists(url):
        return default
    try:
        return json.loads(read_bytes(url).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{url} is not valid JSON ({e}); delete it or restore it") from None


def rename(src: str, dst: str) -> None:
    """Move a file or folder (atomic for a local path on one filesystem; copy + delete on object stores)."""
    if is_remote(src):
        fs, s = get_fs(src)
        _, d = get_fs(dst)
        fs.mv(s, d, recursive=True)
        return
    os.replace(strip_file_scheme(src), strip_file_scheme(dst))


def makedirs(url: str) -> None:
    if not is_remote(url):
        os.makedirs(url, exist_ok=True)


def write_bytes_atomic(url: str, data: bytes) -> None:
    if is_remote(url):
        fs, path = get_fs(url)
        fs.pipe_file(path, data)
        return
    url = strip_file_scheme(url)
    directory = os.path.dirname(os.path.abspath(url))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs should read like any file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, url)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(url: str, obj: Any) -> None:
    write_bytes_atomic(url, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_write(url: str) -> Iterator[str]:
    """Yield a local path to write; on success it becomes `url` in one step.

    On failure nothing appears at `url` (and a previous version stays intact)."""
    if is_remote(url):
        tmpdir = tempfile.mkdtemp(prefix="shammie-upload-")
        local = os.path.join(tmpdir, "part")
        try:
            yield local
            fs, path = get_fs(url)
            fs.put_file(local, path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return
    url = strip_file_scheme(url)
    directory = os.path.dirname(os.path.abspath(url))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(url)}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, url)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove(url: str) -> None:
    fs, path = get_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)
