"""Reading WARC/ARC/WET files record by record, surviving bad input.

warcio parses the records; this module adds what a crawl job needs around it:
every record gets exactly one outcome (a page to extract, a drop reason, or an
error kind) and every byte of the file ends in one (docs/crawl.md, "Accounting"):
a corrupt or truncated gzip member is counted and reading resumes at the next
member, an empty or non-WARC file is one error, and a Content-Length that runs over
the next record of an uncompressed WARC is one error while that record is still read.
HTML selection follows datatrove's `WarcReader` (payload type, libmagic sniffing
when the crawler did not record one); decoding follows the page's BOM, HTTP charset
and <meta> as browsers do, and falls back to datatrove's cchardet guess only when
nothing usable is declared (docs/crawl.md, "Decoding").
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
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


# ---------------------------------------------------------------- decoding
#
# Order, as browsers do it (WHATWG "determine the character encoding"), with two
# crawler-specific rules:
#   1. a byte order mark (UTF-8, UTF-16LE/BE) always wins;
#   2. bytes that are valid UTF-8 are UTF-8 (datatrove's first step): legacy-encoded text
#      with any non-ASCII byte is almost never valid UTF-8, while servers often send a
#      default `charset=ISO-8859-1` header for UTF-8 pages. Exception: a declared 7-bit
#      encoding (ISO-2022-*, HZ), whose pages are pure ASCII bytes;
#   3. the HTTP Content-Type charset, then a `<meta charset>` / `<meta http-equiv>` in the
#      head: the first that decodes the page is used, bad bytes replaced by U+FFFD;
#   4. only when nothing usable is declared: detection as datatrove does it (cchardet).
# A declaration "decodes the page" when its label names a known text encoding and
# decoding replaces at most DECLARED_MAX_BAD_SHARE_OF_NON_ASCII of the page's non-ASCII
# characters plus DECLARED_MAX_BAD_SHARE_OF_ALL of all its characters. A wrong declaration
# turns nearly every non-ASCII character into U+FFFD, far above that; a right one with a
# stray byte stays below it, and the second term lets a mostly-ASCII page with a stray
# byte next to a few curly quotes keep its declaration too.
DECLARED_MAX_BAD_SHARE_OF_NON_ASCII = 0.02
DECLARED_MAX_BAD_SHARE_OF_ALL = 0.001
# <meta> declarations are looked for before `<body`, in at most this many bytes (the
# HTML spec's prescan stops at 1024 bytes; crawled heads are often longer).
META_SCAN_BYTES = 65536
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
# WHATWG's label -> encoding table where Python's codec of the same name is narrower than
# what browsers decode for that label (gb2312 pages use GBK characters, Shift_JIS pages
# Microsoft's extensions, "iso-8859-1" means windows-1252, ...) or where Python lacks the label.
WHATWG_LABELS = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "iso_8859-1": "cp1252", "latin1": "cp1252", "l1": "cp1252",
    "ascii": "cp1252", "us-ascii": "cp1252", "cp819": "cp1252", "ibm819": "cp1252", "x-cp1252": "cp1252",
    "iso-8859-9": "cp1254", "iso8859-9": "cp1254", "latin5": "cp1254",
    "iso-8859-11": "cp874", "tis-620": "cp874", "windows-874": "cp874", "dos-874": "cp874",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "chinese": "gb18030", "csgb2312": "gb18030",
    "gb_2312": "gb18030", "gb_2312-80": "gb18030", "iso-ir-58": "gb18030", "csiso58gb231280": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "csshiftjis": "cp932", "windows-31j": "cp932", "ms932": "cp932",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "ks_c_5601-1989": "cp949", "ksc5601": "cp949",
    "ksc_5601": "cp949", "korean": "cp949", "cseuckr": "cp949", "windows-949": "cp949",
    "big5": "big5hkscs", "big5-hkscs": "big5hkscs", "cn-big5": "big5hkscs", "x-x-big5": "big5hkscs",
    "csbig5": "big5hkscs", "x-euc-jp": "euc_jp", "cseucpkdfmtjapanese": "euc_jp",
    "iso-8859-8-i": "iso8859_8", "csiso88598i": "iso8859_8", "logical": "iso8859_8",
    "x-mac-cyrillic": "mac_cyrillic", "x-mac-ukrainian": "mac_cyrillic", "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-8": "utf-8", "unicode11utf8": "utf-8", "unicode20utf8": "utf-8", "x-unicode20utf8": "utf-8",
    "dos-866": "cp866", "koi": "koi8_r", "koi8": "koi8_r", "koi8_r": "koi8_r", "koi8-ru": "koi8_u",
}
# Declared without a BOM these are ignored (WHATWG: a <meta> cannot declare them, and a
# header claiming them on an ASCII-compatible page is a server misconfiguration); utf-7 and
# the escape/transform codecs are not web encodings at all.
IGNORED_CODECS = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-7",
                  "unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined", "charmap", "mbcs",
                  "oem"}
SEVEN_BIT_CODECS = {"iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3",
                    "iso2022_jp_ext", "iso2022_kr", "hz"}
_HEADER_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?\s*([^"';,\s]+)""", re.I)
_META_CHARSET_RE = re.compile(rb"""<meta\s[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9][A-Za-z0-9_.:+-]*)""", re.I)
_BODY_RE = re.compile(rb"<body[\s>]", re.I)


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str  # Python codec name
    source: str  # "bom" | "utf-8" | "http-header" | "meta" | "detected"
    replaced: int = 0  # bad bytes replaced by U+FFFD


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of an HTTP Content-Type header value."""
    m = _HEADER_CHARSET_RE.search(content_type or "")
    return m.group(1) if m else None


def meta_charset(content: bytes) -> str | None:
    """The first `<meta charset=...>` or `<meta http-equiv content="...; charset=...">` in the head."""
    head = content[:META_SCAN_BYTES]
    body = _BODY_RE.search(head)
    if body:
        head = head[:body.start()]
    m = _META_CHARSET_RE.search(head)
    return m.group(1).decode("ascii") if m else None


def codec_for_label(label: str | None) -> str | None:
    """Python codec for a charset label as browsers read it; None when unknown or not usable on the web."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    name = WHATWG_LABELS.get(label, label)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name.replace("_", "-") in IGNORED_CODECS \
            or info.name in IGNORED_CODECS:
        return None
    return info.name


_replacements = threading.local()


def _count_and_replace(error: UnicodeError):
    """The "replace" error handler (one U+FFFD per bad sequence) that also counts what it replaced."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _replacements.count += 1
    return "\ufffd", error.end


codecs.register_error("shammie-count-replace", _count_and_replace)


def decode_replacing(content: bytes, codec: str) -> tuple[str, int]:
    """`content` decoded with bad bytes replaced by U+FFFD, and how many replacements were made."""
    _replacements.count = 0
    text = content.decode(codec, "shammie-count-replace")
    return text, _replacements.count


def declaration_holds(text: str, replaced: int) -> bool:
    """Whether a declared encoding decoded the page (the rule in the comment above)."""
    if not replaced:
        return True
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    allowed = DECLARED_MAX_BAD_SHARE_OF_NON_ASCII * non_ascii + DECLARED_MAX_BAD_SHARE_OF_ALL * len(text)
    return replaced <= allowed


def _detect(content: bytes) -> Decoded | None:
    """cchardet's guess, as datatrove decodes bytes that are not UTF-8; None if it does not decode."""
    if cchardet is not None:
        encoding = cchardet.detect(content)["encoding"]
    else:
        from charset_normalizer import from_bytes

        best = from_bytes(content).best()
        encoding = best.encoding if best else None
    if not encoding or encoding.lower() in ("utf-8", "utf8"):
        return None
    try:
        return Decoded(content.decode(encoding), encoding.lower(), "detected")
    except (UnicodeDecodeError, LookupError):
        return None


def decode_html(content: bytes, content_type: str | None = None, *, declared: str | None = None) -> Decoded | None:
    """Decode a page: BOM, valid UTF-8, the Content-Type charset, <meta>, then detection.

    `content_type` is the HTTP Content-Type header value; `declared` a charset known from
    elsewhere (WET conversion records are UTF-8 by definition). None when nothing decodes."""
    for bom, codec in BOMS:
        if content.startswith(bom):
            text, replaced = decode_replacing(content[len(bom):], codec)
            return Decoded(text, codec, "bom", replaced)

    def declarations() -> Iterator[tuple[str, str | None]]:
        # lazily: the <meta> scan is only needed when the bytes are not valid UTF-8
        for source, find in (("declared", lambda: declared), ("http-header", lambda: header_charset(content_type)),
                             ("meta", lambda: meta_charset(content))):
            label = find()
            if label:
                yield source, codec_for_label(label)

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        # Valid UTF-8 decides, except for pure ASCII in a declared 7-bit encoding (its
        # escape sequences start with ESC, or "~{" for HZ): every ASCII-compatible
        # encoding gives the same text for ASCII bytes.
        if text.isascii() and ("\x1b" in text or "~{" in text):
            for source, codec in declarations():
                if codec in SEVEN_BIT_CODECS:
                    decoded, replaced = decode_replacing(content, codec)
                    return Decoded(decoded, codec, source, replaced)
        return Decoded(text, "utf-8", "utf-8")
    for source, codec in declarations():
        if codec is None:
            continue
        try:
            decoded, replaced = decode_replacing(content, codec)
        except LookupError:  # a codec that is not a text encoding after all
            continue
        if declaration_holds(decoded, replaced):
            return Decoded(decoded, codec, source, replaced)
    return _detect(content)


def _record_outcome(record, offset: int, warcinfo: dict, arc: bool = False) -> Outcome:
    rec_type = record.rec_type
    headers = record.rec_headers
    # warcio gives a converted ARC record a random WARC-Record-ID (uuid4): a stable one is made below
    rid = None if arc else headers.get_header("WARC-Record-ID")
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

    content_type = record.http_headers.get_header("Content-Type") if record.http_headers is not None else None
    # WET conversion records are UTF-8 by the format's definition
    decoded = decode_html(content, content_type, declared="utf-8" if rec_type == "conversion" else None)
    if decoded is None:
        return Outcome(offset, drop="undecodable", id=rid, url=url,
                       warning="truncated_record" if truncated else None)
    if not url:
        url = dict(headers.headers).get("uri")
    date = headers.get_header("WARC-Date") or dict(headers.headers).get("archive-date") or ""
    if not rid:
        # ARC records have no record id: derive a stable one from url + date
        import hashlib

        rid = "<urn:shammie:" + hashlib.sha1(f"{url}\0{date}".encode()).hexdigest() + ">"
    return Outcome(offset, page=Page(rid, url or "", date, offset, decoded.text, is_text=rec_type == "conversion"),
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


def _find_warc_header(fh, start: int, end: int | None = None, chunk: int = 1 << 20) -> int | None:
    """Offset of the first WARC record header starting a line in [start, end) (end None: the end of the file).

    A header is a `WARC/1.0` or `WARC/1.1` line followed by fields that include WARC-Type
    and Content-Length. Leaves the file position where it was: warcio may still be reading."""
    marker = b"\nWARC/1."
    position = fh.tell()
    try:
        pos = start
        while end is None or pos < end:
            size = chunk if end is None else min(chunk, end - pos)
            # one byte before `pos` too: a header must follow a newline (or start the file)
            fh.seek(max(pos - 1, 0))
            data = (b"\n" if pos == 0 else b"") + fh.read(size + (1 if pos > 0 else 0))
            i = data.find(marker)
            while i >= 0:
                found = pos + i  # data[0] is the byte before `pos`, so the header starts at pos - 1 + i + 1
                if end is not None and found >= end:
                    return None
                if _is_warc_header(fh, found):
                    return found
                i = data.find(marker, i + 1)
            if len(data) < size + 1 or (end is not None and pos + size >= end):
                return None  # scanned to the end of the file or of the range
            pos += size - len(marker)  # overlap: a header may straddle two chunks
        return None
    finally:
        fh.seek(position)


def _is_warc_header(fh, offset: int) -> bool:
    fh.seek(offset)
    head = fh.read(8192)
    if not WARC_HEADER_LINE.match(head):
        return False
    fields = head.split(b"\r\n\r\n", 1)[0].lower()
    return b"\nwarc-type:" in fields and b"\ncontent-length:" in fields


def _read_bytes(fh, start: int, end: int) -> bytes:
    position = fh.tell()
    try:
        fh.seek(start)
        return fh.read(max(0, end - start))
    finally:
        fh.seek(position)


READ_ERRORS = (ArchiveLoadFailed, zlib.error, EOFError, OSError, ValueError, IndexError, KeyError)
WARC_HEADER_LINE = re.compile(rb"WARC/1\.[01]\r?\n")
# error kinds for input that holds no record at all, or holds one whose length is wrong
EMPTY_FILE = "empty_file"
NOT_WARC = "not_warc"
CONTENT_LENGTH_OVERRUN = "content_length_overrun"
UNPARSEABLE = "unparseable_record"
SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class _FileKind:
    compressed: bool
    format: str | None  # "warc", "arc", or None: not known from the first bytes
    error: str | None = None  # the whole file is this one counted error


def _record_format(start: bytes) -> str | None:
    """"warc" or "arc" when `start` begins with a record header, else None."""
    start = start.lstrip(b" \t\r\n")
    if start.startswith(b"WARC/"):
        return "warc"
    if start.startswith(b"filedesc://"):
        return "arc"
    # an ARC record header: URL IP-address 14-digit-date content-type [...] length
    fields = start.split(b"\n", 1)[0].split()
    if len(fields) in (5, 10) and b":" in fields[0] and fields[2].isdigit() and 12 <= len(fields[2]) <= 14 \
            and fields[-1].isdigit():
        return "arc"
    return None


def _sniff(fh) -> _FileKind:
    """What the file's first bytes say: gzip or not, WARC, ARC, empty, or not an archive at all."""
    head = fh.read(SNIFF_BYTES)
    whole = len(head) < SNIFF_BYTES
    if not head.strip(b" \t\r\n") and whole:
        return _FileKind(False, None, EMPTY_FILE)
    if not head.startswith(GZIP_MAGIC):
        # a plain file that does not start with a record may still hold records after some junk
        return _FileKind(False, _record_format(head))
    member = zlib.decompressobj(wbits=31)
    try:
        start = member.decompress(head, 4096)
    except zlib.error:
        return _FileKind(True, None)  # a damaged first member: reading counts it and resumes at the next
    if not start.strip(b" \t\r\n"):
        if member.eof and whole and not member.unused_data:
            return _FileKind(True, None, EMPTY_FILE)  # a gzip file of nothing
        return _FileKind(True, None)  # cut short before any data: reading counts it
    fmt = _record_format(start)
    return _FileKind(True, fmt, None if fmt else NOT_WARC)


@dataclass
class _Held:
    """The last record read: its outcome is handed out once the next record shows where it really ended."""

    outcome: Outcome
    record: object
    declared_end: int | None  # offset just after its block, per its Content-Length (WARC records only)

    def overrun(self) -> Outcome:
        o = self.outcome
        return Outcome(o.offset, error=CONTENT_LENGTH_OVERRUN, id=o.id, url=o.url)


def iter_outcomes(url: str, warcinfo: dict | None = None) -> Iterator[Outcome]:
    """Every record of one WARC/ARC/WET file as an Outcome, in file order.

    Every byte ends in a counted record or a counted error: an empty file is one
    `empty_file` error, a file that holds no record one `not_warc` error (never phantom
    records), a corrupt gzip member one error and reading resumes at the next member,
    and in an uncompressed WARC a record whose Content-Length runs over the start of the
    next record is one `content_length_overrun` error while the records it swallowed
    are read on their own.

    `warcinfo` (a dict) receives `isPartOf` when a warcinfo record names the crawl."""
    warcinfo = {} if warcinfo is None else warcinfo
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as fh:
        kind = _sniff(fh)
        if kind.error:
            yield Outcome(0, error=kind.error)
            return
        fmt, base = kind.format, 0
        if fmt is None and not kind.compressed:
            first = _find_warc_header(fh, 0)
            if first is None:
                yield Outcome(0, error=NOT_WARC)
                return
            yield Outcome(0, error=UNPARSEABLE)  # bytes before the first record
            fmt, base = "warc", first
        yield from _read_records(fh, base, kind.compressed, fmt, warcinfo)


def _read_records(fh, base: int, compressed: bool, fmt: str | None, warcinfo: dict) -> Iterator[Outcome]:
    # Only uncompressed WARC records can run over each other: a gzip member bounds its record.
    plain_warc = not compressed and fmt == "warc"
    while base is not None:
        fh.seek(base)
        # arc2warc only for ARC input: with it warcio would also take stray text lines in
        # a WARC file for ARC headers and return phantom records
        it = ArchiveIterator(fh, arc2warc=fmt != "warc")
        held: _Held | None = None
        failure: Exception | None = None
        resume: int | None = None
        try:
            for record in it:
                if held is not None:
                    if plain_warc:
                        # warcio trusts Content-Length and skips what does not parse: check that the
                        # held record did not swallow a record, and that nothing was skipped
                        resume = yield from _settle_misread(fh, held, reached=it.offset)
                        if resume is not None:
                            break
                    else:
                        yield held.outcome
                held = _hold(record, it, warcinfo, plain_warc, arc=fmt == "arc")
        except READ_ERRORS as e:
            failure = e
        if resume is not None:
            base = resume
            continue
        if held is None:
            if failure is None:
                return
            yield Outcome(it.offset, error=_error_kind(failure))
            base = _find_next_member(fh, it.offset + 1, compressed)
            continue
        if failure is None:
            if plain_warc and getattr(held.record.raw_stream, "limit", 0) > 0:
                # the file ended before the last record's Content-Length did
                base = yield from _settle_misread(fh, held, reached=None)
                continue
            yield held.outcome
            return
        if it.member_info is None:
            # failed while reading the rest of the held record's own bytes: that record is the one error
            yield held.outcome if held.outcome.error else Outcome(
                held.outcome.offset, error=_error_kind(failure), id=held.outcome.id, url=held.outcome.url)
            base = _find_next_member(fh, held.outcome.offset + 1, compressed)
            continue
        # the held record was read whole; what follows it does not parse
        if plain_warc:
            base = yield from _settle_misread(fh, held, reached=None)
            continue
        yield held.outcome
        yield Outcome(it.offset, error=_error_kind(failure))
        base = _find_next_member(fh, it.offset + 1, compressed)


def _hold(record, it: ArchiveIterator, warcinfo: dict, plain_warc: bool, arc: bool = False) -> _Held:
    offset = it.offset  # where this record starts (absolute: the iterator starts at fh.tell())
    try:
        outcome = _record_outcome(record, offset, warcinfo, arc)
    except READ_ERRORS as e:
        outcome = Outcome(offset, error=_error_kind(e))
    declared_end = None
    if plain_warc and record.format == "warc" and record.length is not None:
        declared_end = offset + record.rec_headers.total_len + int(record.length)
    return _Held(outcome, record, declared_end)


def _settle_misread(fh, held: _Held, reached: int | None) -> Iterator[Outcome]:
    """Hand out the held record of an uncompressed WARC, checking how it really ended.

    `reached` is where warcio found the next record (None: it found none). A WARC header
    after the held record's start and before `reached` was passed over:
    inside the held record's declared block, its Content-Length swallowed that record
    (the held record is a `content_length_overrun` error); after the block, the bytes in
    between are junk (one `unparseable_record` error). Returns the offset to resume
    reading at, or None: go on where warcio is, or stop at the end of the file."""
    header = _find_warc_header(fh, held.outcome.offset + 1, end=reached)
    if header is not None and held.declared_end is not None and header < held.declared_end:
        yield held.overrun()
        return header
    yield held.outcome
    junk_from = held.declared_end if held.declared_end is not None else held.outcome.offset + 1
    junk_to = header if header is not None else reached
    if junk_to is None:
        fh.seek(0, 2)
        junk_to = fh.tell()
    if junk_to > junk_from and _read_bytes(fh, junk_from, junk_to).strip(b" \t\r\n"):
        yield Outcome(junk_from, error=UNPARSEABLE)
    return header


def _error_kind(e: Exception) -> str:
    if isinstance(e, zlib.error) or "gzip" in str(e).lower() or isinstance(e, EOFError):
        return "corrupt_gzip"
    if isinstance(e, ArchiveLoadFailed):
        return "unparseable_record"
    return f"read_error_{type(e).__name__}"
