"""Turning the user's INPUT arguments into a sorted list of WARC file URLs.

INPUT may be a local file, a folder (searched recursively), a glob, an
`s3://bucket/prefix` URI (an object or everything under a prefix), or
`cc:CC-MAIN-YYYY-WW`: a Common Crawl snapshot, whose `warc.paths.gz` is read from
the public `commoncrawl` bucket with boto3 (unsigned requests unless
SHAMMIE_CC_SIGNED=1) or, with SHAMMIE_CC_SOURCE=https, from data.commoncrawl.org.
Every problem is reported before any work starts.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import re

from shammie.pipeline import storage
from shammie.pipeline.errors import InputError

WARC_NAME = re.compile(r"\.(warc|arc)(\.wet|\.wat)?(\.gz)?$|\.(warc|arc)\.[^/]*$", re.IGNORECASE)
CC_SNAPSHOT = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")
CC_BUCKET = "commoncrawl"
CC_HTTPS = "https://data.commoncrawl.org/"


def looks_like_warc(name: str) -> bool:
    return bool(WARC_NAME.search(os.path.basename(name)))


def _expand_local(arg: str) -> list[str]:
    if any(c in arg for c in "*?["):
        found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"{arg}: the pattern matches no file")
        return [os.path.abspath(p) for p in found]
    if os.path.isdir(arg):
        found = []
        for root, dirs, files in os.walk(arg):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, f) for f in files if looks_like_warc(f) and not f.startswith(".")]
        if not found:
            raise InputError(f"{arg}: the folder holds no WARC/ARC files (*.warc, *.warc.gz, *.arc.gz, ...)")
        return sorted(os.path.abspath(p) for p in found)
    if os.path.isfile(arg):
        return [os.path.abspath(arg)]
    raise InputError(f"{arg}: no such file or folder")


def _expand_s3(arg: str) -> list[str]:
    fs, path = storage.get_fs(arg)
    try:
        if fs.isfile(path):
            return [arg]
        found = sorted(p for p in fs.find(path) if looks_like_warc(p))
    except Exception as e:  # credentials, endpoint, permissions: all user-fixable
        raise InputError(f"{arg}: cannot list ({type(e).__name__}: {e})") from None
    if not found:
        raise InputError(f"{arg}: no WARC files under this prefix")
    return ["s3://" + p for p in found]


def cc_paths_key(snapshot: str) -> str:
    return f"crawl-data/{snapshot}/warc.paths.gz"


def _cc_s3_client():
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    kwargs = {}
    if storage.s3_endpoint():
        kwargs["endpoint_url"] = storage.s3_endpoint()
    if os.environ.get("SHAMMIE_CC_SIGNED") != "1":
        kwargs["config"] = Config(signature_version=UNSIGNED)
    return boto3.client("s3", **kwargs)


def _expand_cc(arg: str, limit_files: int | None) -> list[str]:
    snapshot = arg[len("cc:"):]
    if not CC_SNAPSHOT.match(snapshot):
        raise InputError(f"{arg}: expected cc:CC-MAIN-YYYY-WW (e.g. cc:CC-MAIN-2024-22)")
    key = cc_paths_key(snapshot)
    https = os.environ.get("SHAMMIE_CC_SOURCE", "s3") == "https"
    try:
        if https:
            import urllib.request

            with urllib.request.urlopen(CC_HTTPS + key, timeout=60) as r:
                data = r.read()
        else:
            data = _cc_s3_client().get_object(Bucket=CC_BUCKET, Key=key)["Body"].read()
    except Exception as e:
        raise InputError(f"{arg}: cannot read the snapshot's file list {key} ({type(e).__name__}: {e})") from None
    lines = [ln.strip() for ln in gzip.GzipFile(fileobj=io.BytesIO(data)).read().decode().splitlines() if ln.strip()]
    if limit_files is not None:
        lines = lines[:limit_files]
    prefix = CC_HTTPS if https else f"s3://{CC_BUCKET}/"
    return [prefix + ln for ln in lines]


def resolve_inputs(args: list[str], limit_files: int | None = None) -> list[str]:
    """All WARC URLs named by the INPUT arguments, deduplicated, in a stable order.

    `limit_files` keeps the first N of each `cc:` snapshot list and of the total."""
    if not args:
        raise InputError("no INPUT given")
    if limit_files is not None and limit_files < 1:
        raise InputError("--limit-files must be at least 1")
    urls: list[str] = []
    for arg in args:
        if arg.startswith("cc:"):
            urls += _expand_cc(arg, limit_files)
        elif arg.startswith("s3://"):
            urls += _expand_s3(arg)
        elif storage.is_remote(arg):
            urls.append(arg)  # http(s):// and other fsspec URLs: taken as one file each
        else:
            urls += _expand_local(storage.strip_file_scheme(arg))
    seen = set()
    unique = [u for u in urls if not (u in seen or seen.add(u))]
    if limit_files is not None:
        unique = unique[:limit_files]
    return unique


def input_fingerprint(url: str) -> dict:
    """What identifies an input WARC's content without reading it.

    Local: size and modification time (a checksum would read every input on every
    re-run). s3://: size and ETag from one metadata request. Common Crawl and
    http(s) files are immutable by name, so their URL is their fingerprint. A file
    that cannot be stat-ed (a dangling symlink) is recorded as missing: the crawl
    counts it as an error for that file and goes on."""
    if url.startswith(("http://", "https://")) or url.startswith(f"s3://{CC_BUCKET}/"):
        return {}
    if url.startswith("s3://"):
        return storage.file_fingerprint(url) or {"missing": True}  # size and ETag, one metadata request
    if storage.is_remote(url):
        return {}
    try:
        st = os.stat(url)
    except OSError:
        return {"missing": True}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def output_name(url: str) -> str:
    """A stable, unique, filesystem-safe name for one input file's outputs."""
    base = os.path.basename(url.rstrip("/"))
    stem = re.sub(r"\.(gz|zst)$", "", base)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:120]
    digest = hashlib.sha1(url.encode("utf-8")).hexdigest()[:10]
    return f"{stem}-{digest}"
