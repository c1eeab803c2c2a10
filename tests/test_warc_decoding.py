"""Decoding pages: a BOM, the HTTP charset and <meta> win over detection when they decode the page.

Each case is a WARC written here with warcio and read back through `iter_outcomes`, the
reader the crawl uses. Where the old behaviour (datatrove's: UTF-8, else cchardet's guess
for the whole page) gets a case wrong, the test also shows that, so it cannot pass by
accident.
"""

from __future__ import annotations

import io
import uuid

import cchardet
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from shammie.pipeline.warc import decode_html, declaration_holds, iter_outcomes
from warc_fixtures import english_paragraphs

JAPANESE = ("東京の図書館では、毎週土曜日に子どもたちのための読み聞かせ会が開かれています。"
            "地域の人々が集まり、新しい本について話し合います。")
RUSSIAN = "Городская библиотека открыла новый читальный зал для студентов и школьников."
# 镕 is a GBK character outside GB2312: pages labelled gb2312 use GBK, as browsers decode them
CHINESE = "北京市图书馆举办了朱镕基时期经济改革的展览，吸引了许多读者前来参观。"


def page(paragraphs: list[str], head: str = "") -> str:
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (f"<!DOCTYPE html><html><head>{head}<title>A page</title></head>"
            f"<body><article>{body}</article></body></html>")


def old_decode(content: bytes) -> str | None:
    """What the crawl (and datatrove) did before: UTF-8, else cchardet's guess for the whole page."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        encoding = cchardet.detect(content)["encoding"]
        return content.decode(encoding, "replace") if encoding else None


def read_back(tmp_path, body: bytes, content_type: str | None = "text/html") -> str | None:
    """Write one HTML response with this body and Content-Type into a WARC; return the text the reader decodes."""
    path = tmp_path / f"{uuid.uuid4().hex}.warc.gz"
    headers = [("Content-Length", str(len(body)))]
    if content_type is not None:
        headers.insert(0, ("Content-Type", content_type))
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        writer.write_record(writer.create_warc_record(
            "http://www.example.org/page", "response", payload=io.BytesIO(body),
            http_headers=StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1"),
            warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"}))
    (outcome,) = list(iter_outcomes(str(path)))
    assert outcome.error is None, outcome.error
    return outcome.page.content if outcome.page else None


def test_a_stray_byte_in_a_declared_utf8_page_is_replaced_not_the_page_re_guessed(tmp_path):
    html = page(["“Rules” are simple, and everyone – players and referees – knows them."] + english_paragraphs(4))
    body = html.encode("utf-8").replace(b"simple,", b"simple\xff,")
    assert "“Rules”" not in old_decode(body)  # cchardet guesses a single-byte code page for the whole page

    text = read_back(tmp_path, body, "text/html; charset=utf-8")
    assert "“Rules” are simple\ufffd, and everyone – players and referees – knows them." in text
    assert text.count("\ufffd") == 1
    assert text == html.replace("simple,", "simple\ufffd,")


def test_shift_jis_declared_in_the_header(tmp_path):
    html = page([JAPANESE] * 4)
    text = read_back(tmp_path, html.encode("shift_jis"), "text/html; charset=Shift_JIS")
    assert text == html


def test_a_japanese_utf8_page_with_one_bad_byte_stays_japanese(tmp_path):
    html = page([JAPANESE] * 6, head='<meta charset="utf-8">')
    encoded = html.encode("utf-8")
    cut = encoded.index("読み聞かせ".encode())
    body = encoded[:cut] + b"\xff" + encoded[cut:]
    old = old_decode(body)
    assert JAPANESE not in old and any("\u0400" <= c <= "\u04ff" for c in old)  # the issue: it became Cyrillic

    for content_type in ("text/html; charset=utf-8", "text/html"):  # declared in the header, or only in <meta>
        text = read_back(tmp_path, body, content_type)
        assert text.count("\ufffd") == 1
        assert text.count(JAPANESE) == 5 and not any("\u0400" <= c <= "\u04ff" for c in text)


def test_windows_1251_declared_only_in_meta(tmp_path):
    html = page([RUSSIAN] * 5, head='<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">')
    text = read_back(tmp_path, html.encode("cp1251"), "text/html")
    assert text == html


def test_gb2312_declared_in_the_header_decodes_its_gbk_characters(tmp_path):
    html = page([CHINESE] * 5)
    body = html.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        body.decode("gb2312")  # Python's gb2312 codec alone would fail on 镕
    text = read_back(tmp_path, body, "text/html; charset=gb2312")
    assert text == html


def test_an_undeclared_page_is_detected_as_before(tmp_path):
    html = page([RUSSIAN] * 5)
    body = html.encode("koi8-r")
    text = read_back(tmp_path, body, "text/html")
    assert text == body.decode(cchardet.detect(body)["encoding"])
    assert text == html


def test_a_byte_order_mark_wins_over_the_header(tmp_path):
    html = page(english_paragraphs(2) + [RUSSIAN])
    body = b"\xff\xfe" + html.encode("utf-16-le")  # UTF-16LE with its BOM, served as ISO-8859-1
    text = read_back(tmp_path, body, "text/html; charset=ISO-8859-1")
    assert text == html


def test_an_unknown_charset_label_falls_back_to_detection(tmp_path):
    html = page([RUSSIAN] * 5)
    body = html.encode("cp1251")
    text = read_back(tmp_path, body, "text/html; charset=x-klingon")
    assert text == body.decode(cchardet.detect(body)["encoding"]) == html


def test_a_declaration_that_fails_badly_gives_way_to_the_next_one_then_to_detection(tmp_path):
    # A server-wide "charset=utf-8" header on a windows-1251 page: nearly every Cyrillic byte
    # is invalid UTF-8, so the header does not decode the page and the page's <meta> does.
    head = '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
    html = page([RUSSIAN] * 5, head=head)
    assert read_back(tmp_path, html.encode("cp1251"), "text/html; charset=utf-8") == html
    # without the <meta>, detection decides
    html = page([RUSSIAN] * 5)
    assert read_back(tmp_path, html.encode("cp1251"), "text/html; charset=utf-8") == html


def test_valid_utf8_wins_over_a_legacy_header(tmp_path):
    # Servers often send a default ISO-8859-1 header for UTF-8 pages; legacy text with
    # non-ASCII bytes is almost never valid UTF-8, so valid UTF-8 decides.
    html = page(["Café au lait, crème brûlée – “quoted”."] + english_paragraphs(3))
    assert read_back(tmp_path, html.encode("utf-8"), "text/html; charset=ISO-8859-1") == html


def test_iso_2022_jp_is_honoured_although_its_bytes_are_ascii():
    html = page([JAPANESE] * 3)
    body = html.encode("iso2022_jp")
    assert body.isascii()
    decoded = decode_html(body, "text/html; charset=ISO-2022-JP")
    assert decoded.text == html and decoded.source == "http-header"


def test_wet_conversion_records_are_utf8_by_definition(tmp_path):
    text = "A line of text with a “quote”. " * 40
    body = text.encode("utf-8").replace(b"quote", b"quo\xffte", 1)
    path = tmp_path / "w.warc.wet.gz"
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        writer.write_record(writer.create_warc_record(
            "http://www.example.org/page", "conversion", payload=io.BytesIO(body),
            warc_headers_dict={"Content-Type": "text/plain"}))
    (outcome,) = list(iter_outcomes(str(path)))
    assert outcome.page.content == text.replace("quote", "quo\ufffdte", 1)


@pytest.mark.parametrize("replaced, non_ascii, total, holds", [
    (1, 3, 2000, True),        # a stray byte in a mostly-ASCII page with two curly quotes
    (1, 3, 500, False),        # ... in a page too short to tell a stray byte from a wrong label
    (1, 400, 2000, True),      # a stray byte in a Japanese page
    (20, 400, 2000, False),    # 5% of the non-ASCII characters: the label is wrong
    (2000, 2000, 200_000, False),  # a Cyrillic page in a long ASCII template, labelled UTF-8
])
def test_the_rule_for_a_declaration_that_decodes_the_page(replaced, non_ascii, total, holds):
    # 2% of the non-ASCII characters plus 0.1% of all characters may come out as U+FFFD
    text = "\ufffd" * replaced + "é" * (non_ascii - replaced) + "a" * (total - non_ascii)
    assert declaration_holds(text, replaced) is holds
