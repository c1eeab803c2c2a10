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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

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


# Connections one process keeps to S3 (botocore's default is 10): the driver reads tens of thousands
# of small task markers at once (`read_json_files`), each a round trip of tens of milliseconds.
S3_CONNECTIONS = 64


def s3_storage_options(anon: bool | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {"config_kwargs": {"max_pool_connections": S3_CONNECTIONS}}
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
    if not is_remote(url):
        try:
            return sorted(os.listdir(strip_file_scheme(url)))
        except (FileNotFoundError, NotADirectoryError):
            return []
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


def list_stats(url: str) -> dict[str, dict[str, Any]]:
    """Name -> what one listing tells about each file directly inside a folder, {} when there is no folder:
    `size` and `mtime_ns` locally, `size` and `etag` on an object store (S3 lists ETags with the keys).

    One `os.scandir` or one paginated LIST (1,000 keys per request) instead of a request per
    file: the runner checks tens of thousands of task outputs this way before a phase starts."""
    if not is_remote(url):
        try:
            with os.scandir(strip_file_scheme(url)) as entries:
                return {e.name: {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
                        for e in entries if e.is_file() for st in (e.stat(),)}
        except (FileNotFoundError, NotADirectoryError):
            return {}
    fs, path = get_fs(url)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return {}
    stats = {}
    for e in entries:
        if e.get("type") == "directory":
            continue
        stat: dict[str, Any] = {"size": int(e.get("size") or 0)}
        tag = e.get("ETag") or e.get("etag")
        if tag:
            stat["etag"] = str(tag).strip('"')
        stats[posixpath.basename(e["name"].rstrip("/"))] = stat
    return stats


def stat_files(urls: Sequence[str], threads: int = 16) -> dict[str, dict[str, Any] | None]:
    """`list_stats` of each file in `urls` (None when missing), with one listing per distinct folder;
    an object store's folders are listed in parallel."""
    folders: dict[str, list[str]] = {}
    for url in urls:
        folders.setdefault(parent(url), []).append(url)
    names = list(folders)
    if len(names) > 1 and any(is_remote(f) for f in names):
        with ThreadPoolExecutor(max_workers=min(threads, len(names))) as pool:
            listings = dict(zip(names, pool.map(list_stats, names)))
    else:
        listings = {f: list_stats(f) for f in names}
    return {url: listings[folder].get(basename(url)) for folder, members in folders.items() for url in members}


def parent(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[0] if "/" in url.rstrip("/") else "."


def relative_to(url: str, base: str) -> str | None:
    """`url` as a path relative to the folder `base` ("documents/a.parquet"), or None when it is not inside it."""
    url, base = strip_file_scheme(url), strip_file_scheme(base).rstrip("/")
    if is_remote(url) != is_remote(base):
        return None
    if not is_remote(url):
        url, base = os.path.normpath(url), os.path.normpath(base)
    prefix = base + "/"
    return url[len(prefix):] if url.startswith(prefix) else None


def basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


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


def read_json_files(urls: Sequence[str]) -> dict[str, Any]:
    """The parsed JSON of each URL, None for a missing or damaged file; an object store's files are
    fetched concurrently (fsspec's batched `cat`) instead of one request after another."""
    out: dict[str, Any] = {}
    remote = [u for u in urls if is_remote(u)]
    for url in urls:
        if not is_remote(url):
            try:
                with open(strip_file_scheme(url), "rb") as f:
                    out[url] = json.loads(f.read().decode("utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                out[url] = None
    if remote:
        fs, _ = get_fs(remote[0])
        paths = {get_fs(u)[1]: u for u in remote}
        fetched = fs.cat(list(paths), on_error="return")
        for path, url in paths.items():
            data = fetched.get(path)
            try:
                out[url] = None if data is None or isinstance(data, BaseException) else json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                out[url] = None
    return out


def remove_files(urls: Sequence[str]) -> None:
    """Remove files (missing ones are fine); an object store deletes up to 1,000 keys per request."""
    local = [u for u in urls if not is_remote(u)]
    for url in local:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(strip_file_scheme(url))
    remote = [u for u in urls if is_remote(u)]
    if remote:
        fs, _ = get_fs(remote[0])
        with contextlib.suppress(FileNotFoundError):
            fs.rm([get_fs(u)[1] for u in remote])


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


# JSON larger than this is written on one line: `indent` makes json use its pure-Python encoder,
# ~10x slower than the C one, which is seconds for the _SUCCESS manifest of a 90k-file folder.
INDENTED_JSON_MAX = 1 << 20


def write_json_atomic(url: str, obj: Any) -> None:
    text = json.dumps(obj, sort_keys=True)
    if len(text) <= INDENTED_JSON_MAX:
        text = json.dumps(obj, indent=2, sort_keys=True)
    write_bytes_atomic(url, (text + "\n").encode("utf-8"))


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


# ---------------------------------------------------------------- conditional writes (S3)
#
# Why hand-written: fsspec has no compare-and-swap. S3 (since August 2024), MinIO and moto
# answer a PUT with `If-None-Match: *` by 412 when the key exists, and a PUT or DELETE with
# `If-Match: <ETag>` by 412 when the object changed: enough for a lock that exactly one
# of two concurrent runs takes. s3fs passes these headers through to boto3 (`call_s3`).


class ConditionalWriteUnsupported(Exception):
    """The store refused or ignored a conditional request."""


# HTTP statuses / S3 error codes meaning "the condition did not hold": 412, and 409 (a concurrent
# conditional write to the same key won; S3 asks the loser to retry); 404 for If-Match on a gone key.
_CONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}
_UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501", "400"}
_conditional_support: dict[str, bool] = {}


def _s3_call(url: str, operation: str, **params: Any) -> dict | None:
    """One S3 request on `url`'s object; None when its condition did not hold."""
    if not url.startswith("s3://"):
        raise ConditionalWriteUnsupported(f"{url.split('://')[0]}:// has no conditional writes here")
    fs, path = get_fs(url)
    bucket, key, _ = fs.split_path(path)
    try:
        return fs.call_s3(operation, Bucket=bucket, Key=key, **params)
    except (FileExistsError, FileNotFoundError):
        return None
    except OSError as e:
        code, status = _error_code(e)
        if code in _CONDITION_FAILED or status in _CONDITION_FAILED:
            return None
        if code in _UNSUPPORTED or status in _UNSUPPORTED:
            raise ConditionalWriteUnsupported(f"{operation} with {', '.join(params)}: {code or status}") from None
        raise


def _error_code(e: BaseException) -> tuple[str, str]:
    """(S3 error code, HTTP status) of the botocore error behind s3fs's translated exception."""
    cause = e.__cause__ if getattr(e, "__cause__", None) is not None else e
    response = getattr(cause, "response", None) or {}
    return (str((response.get("Error") or {}).get("Code") or ""),
            str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or ""))


def _etag(response: dict | None) -> str | None:
    return None if response is None else str(response.get("ETag") or "").strip('"') or None


def create_exclusive(url: str, data: bytes) -> str | None:
    """PUT `data` only if nothing is at `url`: the new object's ETag, or None when one exists."""
    return _etag(_s3_call(url, "put_object", Body=data, IfNoneMatch="*"))


def replace_if_match(url: str, data: bytes, etag: str) -> str | None:
    """PUT `data` only if the object still has `etag`: the new ETag, or None when it changed or is gone."""
    return _etag(_s3_call(url, "put_object", Body=data, IfMatch=f'"{etag}"'))


def delete_if_match(url: str, etag: str) -> bool:
    """DELETE the object only if it still has `etag`; False when it changed or is gone."""
    return _s3_call(url, "delete_object", IfMatch=f'"{etag}"') is not None


def read_with_etag(url: str) -> tuple[bytes, str] | None:
    """An object's bytes and the ETag they belong to (s3fs reads with If-Match on the ETag it saw); None if gone."""
    fs, path = get_fs(url)
    fs.invalidate_cache(path)
    try:
        with fs.open(path, "rb") as f:
            return f.read(), str(f.details.get("ETag") or "").strip('"')
    except FileNotFoundError:
        return None


def supports_conditional_writes(url: str) -> bool:
    """Whether the store behind `url` honours If-None-Match and If-Match (checked once per bucket with a
    probe object next to `url`: a store that ignores the headers would let a second create succeed)."""
    if not url.startswith("s3://"):
        return False
    bucket = url[len("s3://"):].split("/", 1)[0]
    if bucket not in _conditional_support:
        probe = join(parent(url), f".conditional-write-probe-{uuid.uuid4().hex}")
        try:
            first = create_exclusive(probe, b"1")
            honoured = (first is not None and create_exclusive(probe, b"2") is None
                        and (second := replace_if_match(probe, b"3", first)) is not None
                        and replace_if_match(probe, b"4", first) is None and delete_if_match(probe, second))
        except ConditionalWriteUnsupported:
            honoured = False
        finally:
            with contextlib.suppress(Exception):
                remove(probe)
        _conditional_support[bucket] = bool(honoured)
    return _conditional_support[bucket]
