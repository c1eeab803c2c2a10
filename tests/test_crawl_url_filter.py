"""The crawl's URL filter (filters/url_blocklist.py) gives datatrove's URLFilter's verdict and reason for
every URL, with its word tests as set operations and its domain list behind a hash index."""

from __future__ import annotations

import os
import random

from shammie.filters.url_blocklist import SortedStringSet, blocklist_folder, make_url_filter


def test_the_hash_index_answers_like_a_set(tmp_path):
    rng = random.Random(1)
    strings = {"".join(rng.choice("abcdefghij.-é") for _ in range(rng.randint(1, 12))) for _ in range(20_000)}
    index = SortedStringSet.build(strings, str(tmp_path / "index"))
    assert index._hashes is not None and len(index._hashes) == len(strings)
    probes = list(strings)[:5000] + [s + "x" for s in list(strings)[:5000]] + ["", "\ud800", "zzz"]
    assert [p in index for p in probes] == [p in strings for p in probes]
    empty = SortedStringSet.build([], str(tmp_path / "empty"))
    assert "a" not in empty and len(empty) == 0


def test_url_filter_reasons_equal_datatroves_for_every_word_rule():
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter

    from shammie.filters.url_blocklist import offline_tldextract

    reference = URLFilter()
    reference.tldextractor = offline_tldextract()
    reference.download_data()
    compact = make_url_filter()
    compact.download_data()
    rng = random.Random(2)
    soft = sorted(reference.soft_banned_words)
    urls = [f"https://www.example-{w}.com/a" for w in sorted(reference.banned_words)]
    urls += [f"https://news.example.org/{w}/story" for w in soft]  # one soft word: kept
    urls += [f"https://news.example.org/{a}-{b}" for a, b in (rng.sample(soft, 2) for _ in range(200))]
    urls += [f"https://shop{w}online.example.net/" for w in sorted(reference.banned_subwords)]
    with open(os.path.join(blocklist_folder(), "urls")) as f:
        listed = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    urls += rng.sample(listed, 300)
    domains = sorted(d for d in rng.sample(sorted(reference.block_listed_domains), 300))
    urls += [f"http://{d}/x" for d in domains] + [f"https://sub.{d}/y" for d in domains[:100]]
    urls += ["https://en.wikipedia.org/wiki/Gopher", "http://127.0.0.1:8080/", "https://xn--bcher-kva.example/",
             "https://www.bbc.co.uk/news", "http://localhost/", "https://a.b.c.d.example.co.jp/path?q=1"]
    reasons = {}
    for url in urls:
        doc = Document(text="", id="x", metadata={"url": url})
        ours, theirs = compact.filter(doc), reference.filter(doc)
        assert ours == theirs, url
        reasons[theirs if theirs is True else theirs[1]] = True
    assert set(reasons) >= {True, "domain", "subdomain", "url", "hard_blacklisted", "soft_blacklisted",
                            "blacklisted_subword"}
