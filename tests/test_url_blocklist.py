"""The memory-mapped domain block list answers exactly as datatrove's in-memory set, and the URL
filter built on it gives datatrove's verdicts."""

from __future__ import annotations

import glob
import os
import random

import pytest

from shammie.filters.url_blocklist import SortedStringSet, domain_index, make_url_filter, read_like_datatrove


def test_sorted_string_set_is_exact(tmp_path):
    strings = ["", "a", "ab", "abc", "b", "example.com", "exämple.de", "例子.中国", "x" * 300, "sub.example.com"]
    index = SortedStringSet.build(strings + ["a", "ab"], str(tmp_path / "index"))
    assert len(index) == len(strings)
    for s in strings:
        assert s in index, s
    for s in ["aa", "abcd", "c", "example.co", "example.com.", "\ud800", "xx", "sub", "ä", "x" * 299, "zzz"]:
        assert s not in index, s
    assert None not in index and 3 not in index
    empty = SortedStringSet.build([], str(tmp_path / "empty"))
    assert "" not in empty and "a" not in empty


def test_a_list_file_is_indexed_as_datatrove_reads_it(tmp_path):
    """Comment lines are skipped, whitespace stripped, and an empty line is the empty string:
    datatrove's parse_list does so, so a URL whose registered domain is '' (an IP) is blocked."""
    path = tmp_path / "domains"
    path.write_text("# comment\nexample.com\n  spaced.org  \n\nwindows.net\r\n#not-a-comment.com\n")
    expected = read_like_datatrove(str(path))
    index = domain_index(str(path))
    assert set(expected) == {"example.com", "spaced.org", "", "windows.net"}
    for s in expected | {"#not-a-comment.com", "not-a-comment.com", "spaced.org  ", "example"}:
        assert (s in index) == (s in expected), s
    assert domain_index(str(path)) is not None      # the second call opens the built index


def test_the_bundled_domain_list_gives_datatroves_answers():
    from shammie.filters.url_blocklist import blocklist_folder

    path = os.path.join(blocklist_folder(), "domains")
    expected = read_like_datatrove(path)
    index = domain_index(path)
    assert len(index) == len(expected)
    rng = random.Random(0)
    listed = rng.sample(sorted(expected), 50_000)
    probes = listed + [s + "x" for s in listed[:10_000]] + [s[1:] for s in listed[:10_000]] \
        + ["www." + s for s in listed[:10_000]] + ["", "example.com", "wikipedia.org", "google.com"]
    wrong = [s for s in probes if (s in index) != (s in expected)]
    assert not wrong, wrong[:5]


def _urls(shared_data) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator

    urls = []
    for path in sorted(glob.glob(str(shared_data / "warc" / "*.warc.gz"))):
        try:
            with open(path, "rb") as f:
                for record in ArchiveIterator(f):
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    if uri:
                        urls.append(uri)
        except Exception:  # truncated fixtures: the URLs read so far are enough
            continue
    return urls


@pytest.mark.shared_data
def test_url_filter_verdicts_equal_datatroves(shared_data):
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter

    from shammie.filters.url_blocklist import offline_tldextract

    reference = URLFilter()
    reference.tldextractor = offline_tldextract()
    compact = make_url_filter()
    blocked = sorted(read_like_datatrove(os.path.join(
        __import__("shammie.filters.url_blocklist", fromlist=["x"]).blocklist_folder(), "domains")))[:2000:7]
    urls = _urls(shared_data) + [f"https://{d}/page" for d in blocked if d] + [f"http://www.{d}/" for d in blocked[:50]] \
        + ["http://127.0.0.1/x", "https://sexy-example.org/", "http://example.com/porn/video"]
    assert len(urls) > 300
    for url in urls:
        doc = Document(text="", id="x", metadata={"url": url})
        assert compact.filter(doc) == reference.filter(doc), url
