"""Small WARC fixtures written with warcio, with pages built to pass or fail each FineWeb filter."""

from __future__ import annotations

import gzip
import io
import random
import uuid
from dataclasses import dataclass, field

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

DETS = ["the", "a", "this", "that", "every", "our", "their", "one", "another", "each"]
ADJS = ["old", "quiet", "busy", "narrow", "bright", "careful", "small", "large", "local", "famous", "early", "gentle",
        "distant", "modern", "rural", "patient", "sudden", "curious", "ancient", "simple", "heavy", "friendly"]
NOUNS = ["committee", "river", "village", "museum", "student", "library", "farmer", "bridge", "teacher", "garden",
         "orchestra", "hospital", "neighbour", "harbour", "market", "school", "painter", "engineer", "journey",
         "kitchen", "forest", "station", "letter", "festival", "council", "family", "doctor", "valley", "record",
         "lecture", "castle", "workshop", "newspaper", "mountain", "island", "factory", "church", "meadow"]
VERBS = ["visited", "described", "improved", "celebrated", "measured", "protected", "explained", "built",
         "studied", "remembered", "organised", "welcomed", "repaired", "painted", "discovered", "planned",
         "opened", "followed", "changed", "supported", "watched", "reached", "carried", "finished"]
PREPS = ["near", "behind", "across", "beyond", "inside", "along", "under", "after", "before", "during", "without",
         "around", "between", "towards"]
ADVS = ["slowly", "quickly", "happily", "quietly", "together", "again", "carefully", "finally", "early", "later"]


def english_sentence(rng: random.Random) -> str:
    """A random, grammatical English sentence: varied enough that documents share few 5-grams."""
    c = rng.choice
    s = (f"{c(DETS)} {c(ADJS)} {c(NOUNS)} {c(VERBS)} {c(DETS)} {c(NOUNS)} {c(PREPS)} the {c(ADJS)} {c(NOUNS)} "
         f"and it was {c(ADVS)} {c(VERBS)} by {c(DETS)} {c(NOUNS)} in {rng.randint(1800, 2020)}")
    return s[0].upper() + s[1:] + "."


def english_paragraphs(seed: int, paragraphs: int = 6, sentences: int = 4) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(english_sentence(rng) for _ in range(sentences)) for _ in range(paragraphs)]


GERMAN = ["Die Gemeinde hat im letzten Jahr eine neue Schule gebaut, und die Kinder lernen dort sehr gern.",
          "Im Sommer fahren viele Familien an den See, weil das Wasser warm und klar ist.",
          "Der Bürgermeister erklärte, dass die Straße im nächsten Monat repariert werden soll.",
          "Unsere Großmutter erzählt oft Geschichten aus der Zeit, als sie noch ein kleines Mädchen war.",
          "Das Museum zeigt eine Ausstellung über die Geschichte der Stadt und ihrer Brücken.",
          "Nach dem Regen gingen wir durch den Wald und sammelten Pilze für das Abendessen."]


def html_page(paragraphs: list[str], title: str = "A page") -> str:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
            f"<nav><a href='/'>Home</a> <a href='/about'>About</a></nav>"
            f"<article><h1>{title}</h1>\n{body}\n</article>"
            f"<footer>Copyright notice</footer></body></html>")


@dataclass
class FixturePage:
    url: str
    html: str
    expect: str  # "kept" or the filter expected to drop it
    record_id: str = field(default_factory=lambda: f"<urn:uuid:{uuid.uuid4()}>")


def pages_for_each_filter(seed: int = 0, good: int = 3) -> list[FixturePage]:
    """Good pages plus one page built to fail each filter, in FineWeb's order."""
    rng = random.Random(seed)
    pages = [FixturePage(f"http://www.example-{seed}-{i}.org/article/{i}", html_page(english_paragraphs(seed * 100 + i)),
                         "kept") for i in range(good)]
    pages.append(FixturePage(f"http://bdsm-videos-{seed}.example.com/watch", html_page(english_paragraphs(seed * 100 + 50)),
                             "url_filter"))
    pages.append(FixturePage(f"http://empty-{seed}.example.org/", "<html><head><title></title></head><body>"
                             "<script>var a = 1;</script></body></html>",
                             "short_page"))
    # 72 words, all in links: too many for short_page, and trafilatura (precision, no links) extracts nothing
    links = "".join(f"<a href='/x{k}'>{w} {w}</a> " for k, w in
                    enumerate(["apple", "harbour", "copper", "violin", "granite", "orchard"] * 6))
    pages.append(FixturePage(f"http://links-{seed}.example.org/", "<html><head><title></title></head><body>"
                             f"<div>{links}</div></body></html>", "extraction_empty"))
    # a menu of 60 links around a 20-word paragraph: the page has words enough, its text has not
    menu = "".join(f"<li><a href='/s{k}'>Section {k} {NOUNS[k % len(NOUNS)]}</a></li>" for k in range(30))
    pages.append(FixturePage(f"http://www.stub-{seed}.org/page", "<html><head><title>Stub</title></head><body>"
                             f"<nav><ul>{menu}</ul></nav><article><p>{english_sentence(rng)}</p></article>"
                             "</body></html>", "short_text"))
    german = GERMAN[:]
    rng.shuffle(german)
    pages.append(FixturePage(f"http://www.beispiel-{seed}.de/artikel", html_page([" ".join(german)] * 1 + [" ".join(reversed(german))]),
                             "language"))
    repeated = " ".join(f"The red fox jumps over the lazy dog in the green field number {k}." for k in range(40))
    pages.append(FixturePage(f"http://www.repeat-{seed}.org/fox", html_page([repeated]), "gopher_repetition"))
    nostop = []
    words = ["apple", "harbour", "copper", "violin", "granite", "orchard", "lantern", "meadow", "compass", "saddle",
             "thunder", "pebble", "walnut", "crimson", "glacier", "falcon", "timber", "velvet", "quarry", "tundra"]
    for _ in range(8):
        nostop.append(" ".join(" ".join(rng.sample(words, 6)).capitalize() + "." for _ in range(4)))
    pages.append(FixturePage(f"http://www.words-{seed}.org/list", html_page(nostop), "gopher_quality"))
    lorem = english_paragraphs(seed * 100 + 60)
    lorem[2] = lorem[2] + " Lorem ipsum dolor sit amet, the text was left here by the designer of the page."
    pages.append(FixturePage(f"http://www.lorem-{seed}.org/draft", html_page(lorem), "c4_quality"))
    lines = [english_sentence(rng).rstrip(".") for _ in range(30)]
    pages.append(FixturePage(f"http://www.lines-{seed}.org/notes", html_page(lines), "fineweb_quality"))
    return pages


def write_warc(path, pages: list[FixturePage], *, dump: str | None = "CC-MAIN-2024-22", gzip_records: bool = True,
               extra_records: bool = True, payload_type: bool = True) -> dict:
    """Write a CC-like WARC: warcinfo, then request/response(/metadata) per page.

    Returns counts of what was written, for funnel assertions."""
    counts = {"warcinfo": 0, "request": 0, "response": 0, "metadata": 0, "non_html": 0, "revisit": 0}
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=gzip_records)
        info = {"software": "shammie-tests"}
        if dump:
            info["isPartOf"] = dump
        writer.write_record(writer.create_warcinfo_record(str(path).split("/")[-1], info))
        counts["warcinfo"] += 1
        for page in pages:
            req = writer.create_warc_record(page.url, "request", payload=io.BytesIO(b""),
                                            http_headers=StatusAndHeaders("GET / HTTP/1.1", [("Host", "x")],
                                                                          is_http_request=True))
            writer.write_record(req)
            counts["request"] += 1
            body = page.html.encode("utf-8")
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            warc_headers = {"WARC-Record-ID": page.record_id}
            if payload_type:
                warc_headers["WARC-Identified-Payload-Type"] = "text/html"
            rec = writer.create_warc_record(page.url, "response", payload=io.BytesIO(body), http_headers=http,
                                            warc_headers_dict=warc_headers)
            writer.write_record(rec)
            counts["response"] += 1
        if extra_records:
            png = b"\x89PNG\r\n\x1a\n" + bytes(200)
            http = StatusAndHeaders("200 OK", [("Content-Type", "image/png")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                "http://www.example.org/logo.png", "response", payload=io.BytesIO(png), http_headers=http,
                warc_headers_dict={"WARC-Identified-Payload-Type": "image/png"}))
            counts["non_html"] += 1
            writer.write_record(writer.create_warc_record(
                "http://www.example.org/", "metadata", payload=io.BytesIO(b"fetchTimeMs: 12\n"),
                warc_content_type="application/warc-fields"))
            counts["metadata"] += 1
    return counts


def gzip_chunked_page(url: str, html: str, record_id: str | None = None) -> bytes:
    """One uncompressed WARC response whose HTTP body is gzip-encoded and chunked."""
    gz = gzip.compress(html.encode("utf-8"))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(gz[i:i + 500]), gz[i:i + 500]) for i in range(0, len(gz), 500)) + b"0\r\n\r\n"
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                       ("Transfer-Encoding", "chunked")], protocol="HTTP/1.1")
    writer.write_record(writer.create_warc_record(
        url, "response", payload=io.BytesIO(chunks), http_headers=http,
        warc_headers_dict={"WARC-Record-ID": record_id or f"<urn:uuid:{uuid.uuid4()}>"}))
    return buf.getvalue()
