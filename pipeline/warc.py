"""Reading WARC/ARC/WET files record by record, surviving bad input.

warcio parses the records; this module adds what a crawl job needs around it:
every record gets exactly one outcome (a page to extract, a drop reason, or an
error kind), a corrupt or truncated gzip member is counted and skipped and
reading resumes at the next member, and HTML selection/decoding follows
datatrove's `WarcReader` (payload type, libmagic sniffing when the crawler did not
record one, UTF-8 then cchardet) so the kept set matches datatrove's.
"""

from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from typing import Iterator

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from shammie.pipeline import storage

logging.getLogger("warcio").setLevel(logging.ERROR)

HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/1."
DUMP_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
# Deterministic guard instead of a wall-clock limit: trafilatura caps input at
# 20 MB itself; bigger payloads are dropped before decoding.
MAX_PAYLOAD_BYTES = 20_000_000


@dataclass
class Page:
    """A record that may become a document."""

    id: str
    url: str
    date: str
    offset: int
    content: str
    is_text: bool = False  # WET conversion record: already plain text, no extraction


@dataclass
class Outcome:
    """Exactly one per record read: `page`, or `drop` with a reason, or `error` with a kind."""

    offset: int
    page: Page | None = None
    drop: str | None = None
    error: str | None = None
    id: str | None = None
    url: str | None = None
    warning: str | None = None  # a problem that did not stop the record (counted outside the identity)


def dump_from_name(name: str) -> str | None:
    m = DUMP_RE.search(name)
    return m.group(0) if m else None


try:
    import magic
except ImportError:  # libmagic missing: the HTTP Content-Type header decides instead
    magic = None
try:
    import cchardet
except ImportError:
    cchardet = None


def _magic_mime(content: bytes) -> str | None:
    if magic is None:
        return None
    try:
        return magic.from_buffer(content[:65536], mime=True)
    except Exception:
        return None


def _decode(content: bytes) -> str | None:
    """UTF-8, then cchardet's guess (datatrove's order); None if neither decodes."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if cchardet is not None:
        encoding = cchardet.detect(content)["encoding"]
    else:
        from charset_normalizer import from_bytes

        best = from_bytes(content).best()
        encoding = best.encoding if best else None
    if not encoding or encoding.lower() in ("utf-8", "utf8"):
        return None
    try:
        return content.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _record_outcome(record, offset: int, warcinfo: dict) -> Outcome:
    rec_type = record.rec_type
    headers = record.rec_headers
    rid = headers.get_header("WARC-Record-ID")
    url = headers.get_header("WARC-Target-URI")
    if rec_type == "warcinfo":
        payload = record.content_stream().read()
        m = re.search(rb"isPartOf:\s*(\S+)", payload)
        if m:
            warcinfo["isPartOf"] = m.group(1).decode("ascii", "replace")
        return Outcome(offset, drop="warcinfo", id=rid, url=url)
    if rec_type not in ("response", "conversion"):
        return Outcome(offset, drop=f"record_{rec_type}", id=rid, url=url)

    # warcio undoes HTTP chunking and Content-Encoding (and falls back to the raw bytes
    # when a body only claims to be compressed), as datatrove's reader sees it.
    content = record.content_stream().read(MAX_PAYLOAD_BYTES + 1)
    if len(content) > MAX_PAYLOAD_BYTES:
        return Outcome(offset, drop="too_large", id=rid, url=url)
    # The gzip member ended before Content-Length bytes: the page is processed as far as it
    # goes (as datatrove does) and the truncation is counted as a warning.
    truncated = getattr(record.raw_stream, "limit", 0) > 0

    mime = headers.get_header("WARC-Identified-Payload-Type")
    if rec_type == "conversion":
        if mime is not None and mime != "text/plain":
            return Outcome(offset, drop="not_text", id=rid, url=url)
    else:
        if mime is None:
            mime = _magic_mime(content)
            if mime is None and record.http_headers is not None:
                ct = record.http_headers.get_header("Content-Type") or ""
                mime = ct.split(";")[0].strip().lower() or None
        if mime not in HTML_TYPES:
            return Outcome(offset, drop="not_html", id=rid, url=url)

    text = _decode(content)
    if text is None:
        return Outcome(offset, drop="undecodable", id=rid, url=url,
                       warning="truncated_record" if truncated else None)
    if not url:
        url = dict(headers.headers).get("uri")
    date = headers.get_header("WARC-Date") or dict(headers.headers).get("archive-date") or ""
    if not rid:
        # ARC records have no record id: derive a stable one from url + date
        import hashlib

        rid = "<urn:shammie:" + hashlib.sha1(f"{url}\0{date}".encode()).hexdigest() + ">"
    return Outcome(offset, page=Page(rid, url or "", date, offset, text, is_text=rec_type == "conversion"),
                   id=rid, url=url, warning="truncated_record" if truncated else None)


def _find_next_member(fh, start: int, compressed: bool, chunk: int = 1 << 20) -> int | None:
    """Offset of the next gzip member (or WARC header) at or after `start`."""
    magic = GZIP_MAGIC if compressed else WARC_MAGIC
    fh.seek(start)
    carry = b""
    pos = start
    while True:
        buf = fh.read(chunk)
        if not buf:
            return None
        data = carry + buf
        i = data.find(magic)
        if i >= 0:
            return pos - len(carry) + i
        carry = data[-(len(magic) - 1):]
        pos += len(buf)


READ_ERRORS = (ArchiveLoadFailed, zlib.error, EOFError, OSError, ValueError, IndexError, KeyError)


def iter_outcomes(url: str, warcinfo: dict | None = None) -> Iterator[Outcome]:
    """Every record of one WARC/ARC/WET file as an Outcome, in file order.

    `warcinfo` (a dict) receives `isPartOf` when a warcinfo record names the crawl."""
    warcinfo = {} if warcinfo is None else warcinfo
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as fh:
        head = fh.read(3)
        compressed = head == GZIP_MAGIC
        base = 0
        while True:
            fh.seek(base)
            it = ArchiveIterator(fh, arc2warc=True)
            last_offset = base
            try:
                for record in it:
                    # `it.offset` is where this record starts; get_record_offset() would consume it
                    offset = base + it.offset
                    last_offset = offset
                    try:
                        yield _record_outcome(record, offset, warcinfo)
                    except READ_ERRORS as e:
                        yield Outcome(offset, error=_error_kind(e))
                return
            except READ_ERRORS as e:
                yield Outcome(last_offset, error=_error_kind(e))
            nxt = _find_next_member(fh, last_offset + 1, compressed)
            if nxt is None:
                return
            base = nxt


def _error_kind(e: Exception) -> str:
    if isinstance(e, zlib.error) or "gzip" in str(e).lower() or isinstance(e, EOFError):
        return "corrupt_gzip"
    if isinstance(e, ArchiveLoadFailed):
        return "unparseable_record"
    return f"read_error_{type(e).__name__}"
