"""Turning the user's INPUT arguments into a sorted list of WARC file URLs.

INPUT may be a local file, a folder (searched recursively), a glob, an
`s3://bucket/prefix` URI (an object or everything under a prefix), or
`cc:CC-MAIN-YYYY-WW`: a Common Crawl snapshot, whose `warc.paths.gz` is read from
the public `commoncrawl` bucket with boto3 (unsigned requests unless
SHAMMIE_CC_SIGNED=1) or, with SHAMMIE_CC_SOURCE=https, from data.commoncrawl.org.
Every problem is reported before any work starts.

The same file named through several paths (a symlink, a hard link, a folder and a glob that
both reach it) is crawled once, under the first of its names (arguments in the order given,
each one's files sorted), and the others
are named in a warning: locally a file is identified by its device and inode, on S3 an object by
its ETag and size (two keys holding the same bytes). Recursive globs (`**`) follow symlinked
folders but never into a folder they are already inside, so a symlink loop ends.
"""

from __future__ import annotations

import fnmatch
import glob
import gzip
import hashlib
import io
import os
import re
import sys

from shammie.pipeline import storage
from shammie.pipeline.errors import InputError

WARC_NAME = re.compile(r"\.(warc|arc)(\.wet|\.wat)?(\.gz)?$|\.(warc|arc)\.[^/]*$", re.IGNORECASE)
CC_SNAPSHOT = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")
CC_BUCKET = "commoncrawl"
CC_HTTPS = "https://data.commoncrawl.org/"


def looks_like_warc(name: str) -> bool:
    return bool(WARC_NAME.search(os.path.basename(name)))


def _glob_base(pattern: str) -> tuple[str, list[str]]:
    """(the folder before the first wildcard, the pattern's remaining path segments)."""
    parts = pattern.split(os.sep)
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return os.sep.join(parts[:i]) or ("/" if pattern.startswith("/") else "."), parts[i:]
    return pattern, []


def _segments_match(pattern: list[str], path: list[str]) -> bool:
    """glob.glob's rules on path segments: `**` spans any number of folders, other wildcards stay in one
    segment, and a wildcard does not match a name starting with '.' unless the pattern segment does."""
    if not pattern:
        return not path
    head = pattern[0]
    if head == "**":
        return any(_segments_match(pattern[1:], path[i:]) for i in range(len(path) + 1)
                   if not any(p.startswith(".") for p in path[:i]))
    if not path or (path[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(path[0], head) and _segments_match(pattern[1:], path[1:])


def recursive_glob(pattern: str) -> list[str]:
    """The files a `**` pattern matches, like glob.glob(pattern, recursive=True), except that a symlinked
    folder is followed only when it does not lead back into a folder already being walked (glob.glob
    walks a symlink loop until the path is too long: minutes to never)."""
    base, rest = _glob_base(pattern)
    found = []
    for root, dirs, files in _walk_without_loops(base):
        relative = os.path.relpath(root, base)
        prefix = [] if relative == "." else relative.split(os.sep)
        found += [os.path.join(root, f) for f in files if _segments_match(rest, prefix + [f])]
    return found


def _walk_without_loops(base: str):
    """os.walk following symlinked folders, skipping any whose (device, inode) is one of its ancestors'."""
    def walk(folder: str, ancestors: frozenset):
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        dirs, files = [], []
        for entry in entries:
            try:
                (dirs if entry.is_dir() else files).append(entry.name)
            except OSError:
                continue
        yield folder, dirs, files
        for name in dirs:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in ancestors:
                yield from walk(path, ancestors | {key})

    try:
        st = os.stat(base)
    except OSError:
        return iter(())
    return walk(base, frozenset({(st.st_dev, st.st_ino)}))


def _expand_local(arg: str) -> list[str]:
    if any(c in arg for c in "*?["):
        matched = recursive_glob(arg) if "**" in arg else glob.glob(arg)
        found = sorted(p for p in matched if os.path.isfile(p))
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


def _expand_s3(arg: str, identities: dict[str, tuple]) -> list[str]:
    """The objects `arg` names; `identities` gets each one's (ETag, size) from the same listing."""
    fs, path = storage.get_fs(arg)
    try:
        if fs.isfile(path):
            found = {arg: fs.info(path)}
        else:
            found = {"s3://" + p: info for p, info in fs.find(path, detail=True).items() if looks_like_warc(p)}
    except Exception as e:  # credentials, endpoint, permissions: all user-fixable
        raise InputError(f"{arg}: cannot list ({type(e).__name__}: {e})") from None
    if not found:
        raise InputError(f"{arg}: no WARC files under this prefix")
    for url, info in found.items():
        etag = info.get("ETag") or info.get("etag")
        if etag:
            identities[url] = ("s3", str(etag).strip('"'), info.get("size"))
    return sorted(found)


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
    identities: dict[str, tuple] = {}
    for arg in args:
        if arg.startswith("cc:"):
            urls += _expand_cc(arg, limit_files)
        elif arg.startswith("s3://"):
            urls += _expand_s3(arg, identities)
        elif storage.is_remote(arg):
            urls.append(arg)  # http(s):// and other fsspec URLs: taken as one file each
        else:
            urls += _expand_local(storage.strip_file_scheme(arg))
    seen = set()
    unique = [u for u in urls if not (u in seen or seen.add(u))]
    unique = _one_name_per_file(unique, identities)
    if limit_files is not None:
        unique = unique[:limit_files]
    return unique


def _identity(url: str, identities: dict[str, tuple]) -> tuple | None:
    """What makes two names the same file: (device, inode) locally, (ETag, size) on S3."""
    if url in identities:
        return identities[url]
    if storage.is_remote(url):
        return None
    try:
        st = os.stat(url)
    except OSError:
        return None  # a dangling symlink: counted as an unreadable file by the crawl
    return ("local", st.st_dev, st.st_ino)


def _one_name_per_file(urls: list[str], identities: dict[str, tuple]) -> list[str]:
    """`urls` with every file kept under its first name: a file reached through a
    symlink, a hard link or another key with the same bytes would be crawled, and counted, twice.
    The other names are named in a warning."""
    first: dict[tuple, str] = {}
    kept, aliases = [], {}
    for url in urls:
        key = _identity(url, identities)
        if key is None or key not in first:
            if key is not None:
                first[key] = url
            kept.append(url)
        else:
            aliases.setdefault(first[key], []).append(url)
    for url, others in aliases.items():
        print(f"warning: {url} is also given as {', '.join(others)} (the same file"
              f"{' by ETag and size' if url.startswith('s3://') else ': same device and inode'}); "
              f"it is crawled once, as {url}", file=sys.stderr, flush=True)
    return kept


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
