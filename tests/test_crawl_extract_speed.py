"""Exact speed-ups of extraction: justext's stop-word tuple hashed once (pipeline/trafilatura_xpaths.py)."""

from __future__ import annotations

from shammie.pipeline import trafilatura_xpaths as tx


class CountedHash(str):
    calls = 0

    def __hash__(self):
        CountedHash.calls += 1
        return str.__hash__(self)


def test_a_hash_once_tuple_hashes_its_items_once_and_equals_the_tuple():
    items = [CountedHash(f"w{k}") for k in range(100)]
    plain = tuple(items)
    CountedHash.calls = 0
    once = tx.HashOnceTuple(items)
    assert CountedHash.calls == 100
    for _ in range(5):
        assert hash(once) == hash(plain)
    assert CountedHash.calls == 100 + 5 * 100  # only the plain tuple's hashes went through the items again
    assert once == plain and {plain: 1}[once] == 1


def test_trafilatura_hands_justext_a_stop_word_tuple_hashed_once():
    from justext.utils import get_stoplist, get_stoplists
    from trafilatura import external

    from shammie.pipeline.extract import make_extractor

    make_extractor("trafilatura")
    stoplist = external.JT_STOPLIST
    assert isinstance(stoplist, tx.HashOnceTuple)
    # the same words trafilatura's own jt_stoplist_init gives: every justext stop-word list
    assert set(stoplist) == {w for language in get_stoplists() for w in get_stoplist(language)}
    assert len(stoplist) > 100_000
    tx.uninstall()
    try:
        assert not isinstance(external.JT_STOPLIST, tx.HashOnceTuple)
    finally:
        tx.install()
    assert isinstance(external.JT_STOPLIST, tx.HashOnceTuple)
