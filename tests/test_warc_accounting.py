"""Every byte of input ends in a counted record or a counted error.

Files are written here with warcio, then damaged the way real input is: a Content-Length
that runs over the next record in an uncompressed WARC, a zero-byte file, text that is
not a WARC at all, junk before the first record, a corrupt gzip member.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from shammie.pipeline.warc import iter_outcomes
from warc_fixtures import FixturePage, english_paragraphs, html_page, write_warc


def good_pages(n: int, seed: int = 700) -> list[FixturePage]:
    return [FixturePage(f"http://www.good-{seed}-{k}.org/a", html_page(english_paragraphs(seed + k)), "kept")
            for k in range(n)]


def record_offsets(path: Path) -> list[tuple[int, str | None]]:
    """(offset, WARC-Record-ID) of every record of an undamaged file."""
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        return [(it.offset, r.rec_headers.get_header("WARC-Record-ID")) for r in it]


def with_content_length(raw: bytes, record_start: int, length: int) -> bytes:
    """`raw` with the Content-Length of the record at `record_start` set to `length`."""
    m = re.compile(rb"Content-Length: (\d+)\r\n").search(raw, record_start)
    return raw[:m.start(1)] + str(length).encode() + raw[m.end(1):]


def content_length(raw: bytes, record_start: int) -> int:
    return int(re.compile(rb"Content-Length: (\d+)\r\n").search(raw, record_start).group(1))


def outcomes(path: Path) -> list:
    return list(iter_outcomes(str(path)))


def errors(found: list) -> Counter:
    return Counter(o.error for o in found if o.error)


@pytest.fixture
def plain_warc(tmp_path):
    """An uncompressed WARC: warcinfo, then request + response for each of three pages."""
    path = tmp_path / "plain.warc"
    pages = good_pages(3)
    write_warc(path, pages, gzip_records=False, extra_records=False)
    return path, pages, record_offsets(path)


def test_an_undamaged_plain_warc_reads_as_written(plain_warc):
    path, pages, offsets = plain_warc
    found = outcomes(path)
    assert [(o.offset, o.id) for o in found] == offsets
    assert not errors(found)
    assert [o.page.id for o in found if o.page] == [p.record_id for p in pages]


def test_content_length_past_the_end_of_the_file_is_an_error_and_the_swallowed_records_are_read(plain_warc, tmp_path):
    path, pages, offsets = plain_warc
    raw = path.read_bytes()
    second_response = offsets[4][0]
    damaged = tmp_path / "overrun.warc"
    damaged.write_bytes(with_content_length(raw, second_response, len(raw)))  # runs past the end of the file
    shift = len(str(len(raw))) - len(str(content_length(raw, second_response)))

    found = outcomes(damaged)
    assert errors(found) == {"content_length_overrun": 1}
    (overrun,) = [o for o in found if o.error]
    assert (overrun.offset, overrun.id) == (second_response, pages[1].record_id)
    # the swallowed request and response of the third page are read on their own, at their offsets
    assert [(o.offset, o.id) for o in found[5:]] == [(off + shift, rid) for off, rid in offsets[5:]]
    assert [o.page.id for o in found if o.page] == [pages[0].record_id, pages[2].record_id]
    assert len(found) == len(offsets)  # one outcome per record, the overrunning one included


@pytest.mark.parametrize("extra", ["into the next header", "the whole next record", "into the record after"])
def test_content_length_over_the_next_record_is_an_error_and_that_record_is_read(plain_warc, tmp_path, extra):
    path, pages, offsets = plain_warc
    raw = path.read_bytes()
    second_response, swallowed_request, third_response = offsets[4][0], offsets[5][0], offsets[6][0]
    length = content_length(raw, second_response)
    block_start = raw.index(b"\r\n\r\n", second_response) + 4
    overrun_by = {"into the next header": 200,
                  # exactly up to the next record: warcio itself notices nothing
                  "the whole next record": third_response - 4 - block_start - length,
                  "into the record after": third_response - block_start - length + 500}[extra]
    damaged = tmp_path / "overrun.warc"
    new_length = length + overrun_by
    assert len(str(new_length)) == len(str(length))  # offsets after the edit stay comparable
    damaged.write_bytes(with_content_length(raw, second_response, new_length))

    found = outcomes(damaged)
    assert errors(found) == {"content_length_overrun": 1}
    assert [(o.offset, o.id) for o in found] == offsets
    assert found[4].error == "content_length_overrun" and found[4].id == pages[1].record_id
    assert found[5].offset == swallowed_request and found[5].drop == "record_request"
    assert [o.page.id for o in found if o.page] == [pages[0].record_id, pages[2].record_id]


def test_a_content_length_that_falls_short_counts_the_leftover_bytes(plain_warc, tmp_path):
    path, pages, offsets = plain_warc
    raw = path.read_bytes()
    second_response = offsets[4][0]
    damaged = tmp_path / "short.warc"
    damaged.write_bytes(with_content_length(raw, second_response, content_length(raw, second_response) - 200))

    found = outcomes(damaged)
    assert errors(found) == {"unparseable_record": 1}  # the 200 bytes between the cut and the next record
    assert [o.id for o in found if not o.error] == [rid for _, rid in offsets]
    assert [(o.offset, o.id) for o in found if o.offset in dict(offsets)] == offsets


def test_a_zero_byte_file_is_one_error(tmp_path):
    for name in ("empty.warc.gz", "empty.warc"):
        (tmp_path / name).write_bytes(b"")
        found = outcomes(tmp_path / name)
        assert [(o.offset, o.error) for o in found] == [(0, "empty_file")]
    (tmp_path / "nothing.warc.gz").write_bytes(gzip.compress(b""))
    assert [o.error for o in outcomes(tmp_path / "nothing.warc.gz")] == ["empty_file"]


def test_a_text_file_named_like_a_warc_is_one_error_not_phantom_records(tmp_path):
    text = "\n".join(f"line {i} of a plain text file with some words in it" for i in range(100)) + "\n"
    for name, data in (("notes.warc.gz", text.encode()), ("notes.warc", text.encode()),
                       ("notes-gzipped.warc.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(data)
        found = outcomes(tmp_path / name)
        assert [(o.offset, o.error, o.drop) for o in found] == [(0, "not_warc", None)], name


def test_junk_before_the_first_record_is_one_error_and_the_records_are_read(plain_warc, tmp_path):
    path, pages, offsets = plain_warc
    junk = b"HTTP/1.1 200 OK\r\nsome bytes left by a broken download\r\n\r\n"
    damaged = tmp_path / "junk.warc"
    damaged.write_bytes(junk + path.read_bytes())
    found = outcomes(damaged)
    assert [(o.offset, o.error) for o in found[:1]] == [(0, "unparseable_record")]
    assert [(o.offset, o.id) for o in found[1:]] == [(off + len(junk), rid) for off, rid in offsets]


def test_a_corrupt_gzip_member_is_one_error_and_later_offsets_stay_true(tmp_path):
    path = tmp_path / "corrupt.warc.gz"
    pages = good_pages(4)
    write_warc(path, pages, extra_records=False)
    offsets = record_offsets(path)
    raw = bytearray(path.read_bytes())
    start, end = offsets[4][0], offsets[5][0]  # the second page's response member
    raw[start + 40:end - 40] = bytes(end - 40 - start - 40)
    path.write_bytes(bytes(raw))

    found = outcomes(path)
    assert sum(errors(found).values()) == 1 and found[4].offset == start and found[4].error
    # records after the damage keep their real offsets (they were once reported twice as far in)
    assert [(o.offset, o.id) for o in found[5:]] == offsets[5:]
    assert len(found) == len(offsets)


def test_the_crawl_counts_each_damaged_file_and_the_funnel_adds_up(ray_session, tmp_path):
    from shammie.filters.crawl import crawl

    warcs = tmp_path / "warcs"
    warcs.mkdir()
    pages = good_pages(3, seed=900)
    write_warc(warcs / "overrun.warc", pages, gzip_records=False, extra_records=False)
    raw = (warcs / "overrun.warc").read_bytes()
    second_response = record_offsets(warcs / "overrun.warc")[4][0]
    (warcs / "overrun.warc").write_bytes(with_content_length(raw, second_response, len(raw)))
    (warcs / "empty.warc.gz").write_bytes(b"")
    (warcs / "text.warc.gz").write_text("just some notes\n" * 100)

    section = crawl([str(warcs)], str(tmp_path / "job"), progress=False)
    assert section["files"] == 3
    assert section["errors"] == {"content_length_overrun": 1, "empty_file": 1, "not_warc": 1}
    assert section["records_read"] == section["kept"] + sum(section["dropped"].values()) + sum(section["errors"].values())
    assert section["records_read"] == 7 + 1 + 1  # the overrun file's 7 records, one per other file
    assert "not_html" not in section["dropped"]
    documents = (tmp_path / "job" / "documents").glob("*.parquet")
    kept = {r["id"] for p in documents for r in pq.read_table(p).to_pylist()}
    assert kept == {pages[0].record_id, pages[2].record_id}
    markers = {json.loads(m.read_text())["file"].rsplit("/", 1)[-1]: json.loads(m.read_text())
               for m in (tmp_path / "job" / "_meta" / "documents" / "_tasks").glob("*.json")}
    assert markers["text.warc.gz"]["errors"] == {"not_warc": 1}


@pytest.mark.shared_data
def test_arc_records_get_the_same_id_at_every_read(shared_data):
    """warcio gives each converted ARC record a random WARC-Record-ID; the crawl's ids (and so its
    output) must not change from one read of the same file to the next."""
    path = str(shared_data / "warc" / "edge-arc-format.arc.gz")
    first = [(o.offset, o.page.id) for o in iter_outcomes(path) if o.page]
    second = [(o.offset, o.page.id) for o in iter_outcomes(path) if o.page]
    assert first and first == second
    assert all(i.startswith("<urn:shammie:") for _, i in first)
