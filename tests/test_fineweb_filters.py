"""Shammie's output-neutral additions around datatrove's FineWeb filters give datatrove's results."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from shammie.filters.fineweb import make_c4_filter


def _texts() -> list[str]:
    sentence = "The committee met on Tuesday to discuss the new budget. It approved the plan after a long debate."
    texts = []
    for lines in range(0, 9):  # 0..8 lines of two sentences each: around the threshold of 5
        for junk in ("", "Click here\n", "var x = {a: 1};\n", "lorem ipsum dolor sit amet consectetur\n"):
            body = "\n".join(sentence for _ in range(lines))
            texts.append(junk + body)
            texts.append(body + "\n" + junk + "One more short line here.")
    texts.append("Only three words\nand another line with four words")
    texts.append("A single long line. " * 40)
    return texts


def _outcomes(step, texts):
    from datatrove.data import Document

    out = []
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        out.append((step.filter(doc), doc.text))
    return out


def test_c4_sentence_budget_keeps_datatrove_verdicts_and_text(monkeypatch):
    from datatrove.pipeline.filters import C4QualityFilter
    from datatrove.utils import text as dt_text
    from datatrove.utils import word_tokenizers

    # datatrove's own tokenizer loader, even when an earlier test installed the crawl workers'
    # memo (then sentences are counted without split_into_parts: test_c4_sentence_budget_on_real_pages)
    loader = word_tokenizers.load_word_tokenizer
    monkeypatch.setattr(word_tokenizers, "load_word_tokenizer", getattr(loader, "__wrapped__", loader))
    texts = _texts()
    ours = make_c4_filter(filter_no_terminal_punct=False)
    want = _outcomes(C4QualityFilter(filter_no_terminal_punct=False), texts)
    assert {str(r) for r, _ in want} >= {"True", "(False, 'too_few_sentences')", "(False, 'curly_bracket')"}
    assert _outcomes(ours, texts) == want
    # With split_paragraph=False the document's own sentence split must stay whole.
    whole = C4QualityFilter(split_paragraph=False)
    assert _outcomes(make_c4_filter(split_paragraph=False), texts) == _outcomes(whole, texts)

    calls = []
    original = dt_text.split_into_parts
    monkeypatch.setattr(dt_text, "split_into_parts", lambda *a, **k: calls.append(1) or original(*a, **k))
    long_doc = "\n".join(["The committee met on Tuesday to discuss the new budget."] * 50)
    _outcomes(C4QualityFilter(filter_no_terminal_punct=False), [long_doc])
    vanilla_calls, calls[:] = len(calls), []
    assert _outcomes(ours, [long_doc])[0][0] is True
    assert vanilla_calls == 50 and len(calls) == 5  # stops splitting once 5 sentences are seen


def test_c4_sentence_budget_on_real_pages(shared_data, monkeypatch):
    from datatrove.pipeline.filters import C4QualityFilter

    from shammie.filters import fineweb
    from shammie.filters.words import ChunkCachedWordTokenizer

    fineweb.install_word_tokenizer_memo()  # as a crawl worker has it: lines are counted without Spans
    counted = []
    count = ChunkCachedWordTokenizer.count_sentences
    monkeypatch.setattr(ChunkCachedWordTokenizer, "count_sentences",
                        lambda self, text: counted.append(1) or count(self, text))

    labels = shared_data / "labels"
    texts = [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
    texts += [t for t in pq.read_table(labels / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist() if t]
    texts += ["\n".join(t.splitlines()[:k]) for t in texts[:100] for k in (1, 2, 3, 5, 8)]
    want = _outcomes(C4QualityFilter(filter_no_terminal_punct=False), texts)
    assert sum(r is True for r, _ in want) > 100 and sum(r is not True for r, _ in want) > 100
    assert _outcomes(make_c4_filter(filter_no_terminal_punct=False), texts) == want
    assert len(counted) > 1000


def _repetition_cases() -> list[list[str]]:
    """Word lists that reach every branch: ties between n-grams of different lengths (the first seen
    wins), repeats that make the scan skip, words whose concatenations collide, words with spaces."""
    cases = [[], ["a"], ["a", "b"], ["a"] * 12, ["ab", "c", "a", "bc"] * 4, ["x", "yy", "x", "yy", "zzz", "zzz"],
             ["long", "a", "long", "a", "b", "cc", "b", "cc"], ["a b", "c", "a", "b c", "a b", "c", "a", "b c"],
             ["the", "cat", "sat", "on", "the", "mat"] * 3 + ["and", "then", "the", "cat", "sat"]]
    import random

    rng = random.Random(0)
    for _ in range(300):
        vocab = [rng.choice(["a", "b", "ab", "ba", "c", "the", "word", "x y"][: rng.randint(2, 8)]) for _ in range(5)]
        cases.append([rng.choice(vocab) for _ in range(rng.randint(0, 40))])
    return cases


def test_bulk_ngram_counts_equal_datatroves_functions(shared_data):
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate, find_top_duplicate, get_n_grams
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    from shammie.filters.repetition import all_duplicate_chars, top_duplicate_chars

    labels = shared_data / "labels"
    texts = [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
    tokenizer = SpaCyTokenizer("en")
    word_lists = [tokenizer.word_tokenize(t) for t in texts[:400]] + _repetition_cases()
    for words in word_lists:
        for n in (2, 3, 4):
            grams = get_n_grams(words, n)
            want = find_top_duplicate(grams) if grams else None
            if not any(" " in w for w in words):  # the filter takes datatrove's functions otherwise
                assert top_duplicate_chars(words, n) == want, (words[:20], n)
        for n in range(5, 11):
            assert all_duplicate_chars(words, n) == find_all_duplicate(words, n), (words[:20], n)


def test_duplicate_ngram_count_is_exact_when_hashes_collide(monkeypatch):
    """The scan over repeated keys tells keys apart by a hash; keys that share one are compared as
    strings, and when two different keys collide the count comes from the full scan. Forced here
    by putting every n-gram in one group."""
    import numpy as np
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate

    from shammie.filters import repetition

    cases = _repetition_cases() + [["😀", "a", "\ud800", "b"] * 5, ["ab", "ba"] * 8, ["a", "b", "c", "d", "e"] * 3]
    for words in cases:  # non-BMP characters and a lone surrogate hash too
        for n in range(5, 11):
            assert repetition.all_duplicate_chars(words, n) == find_all_duplicate(words, n), (words[:20], n)
    fallbacks = []
    scan = repetition._scan_all_keys
    monkeypatch.setattr(repetition, "_scan_all_keys", lambda *a: fallbacks.append(1) or scan(*a))
    monkeypatch.setattr(repetition.NgramHashes, "groups", lambda self, n, m: np.zeros(m, dtype=np.int64) if m > 1 else None)
    for words in cases:
        for n in range(5, 11):
            assert repetition.all_duplicate_chars(words, n) == find_all_duplicate(words, n), (words[:20], n)
    assert len(fallbacks) > 100


def test_fast_gopher_quality_gives_datatroves_verdicts(shared_data):
    from datatrove.pipeline.filters import GopherQualityFilter

    from shammie.filters.gopher_quality import FastGopherQuality

    labels = shared_data / "labels"
    texts = [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
    texts += [t for t in pq.read_table(labels / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist() if t]
    # built pages for the rules real text rarely breaks: symbols, bullets, ellipses, no stop words, long words
    base = "the cat and the dog sat on a mat with some of the birds " * 6
    texts += [base + "# " * k for k in (10, 60)] + [base + "... " * 30, "\n".join(["- item one two"] * 40),
              "\n".join(["it was so…"] * 40), "lorem ipsum dolor sit amet " * 20, base.replace(" ", "x ") * 2,
              "1 2 3 4 5 ! ? " * 40 + base, "supercalifragilistic " * 60, base * 300, "…"]
    want = _outcomes(GopherQualityFilter(), texts)
    reasons = {r[1] for r, _ in want if r is not True}
    assert len(reasons) >= 7 and sum(r is True for r, _ in want) > 100, reasons
    assert _outcomes(FastGopherQuality(), texts) == want
    assert _outcomes(FastGopherQuality(), texts) == want  # again, from the remembered words


def test_fast_gopher_repetition_gives_datatroves_verdicts(shared_data):
    from datatrove.pipeline.filters import GopherRepetitionFilter

    from shammie.filters.repetition import FastGopherRepetition

    labels = shared_data / "labels"
    texts = [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
    texts += [t for t in pq.read_table(labels / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist() if t]
    # repeated blocks push documents over each threshold in turn
    texts += [t + "\n\n" + "\n".join(t.splitlines()[:k]) for t in texts[:60] for k in (1, 3, 10)]
    texts += ["", "word", "a b c d e f g h i j k " * 30]
    want = _outcomes(GopherRepetitionFilter(), texts)
    reasons = {r[1] for r, _ in want if r is not True}
    assert len(reasons) >= 4 and sum(r is True for r, _ in want) > 100, reasons
    assert _outcomes(FastGopherRepetition(), texts) == want


def _pii_texts(shared) -> list[str]:
    """Texts with and without addresses: built ones at the edges of both regexes, then real ones."""
    texts = ["no address here", "mail me at jane.doe@example.org today", "server 8.8.8.8 and 10.0.0.1",
             "version 1.2.3.4.5 build", "1.2.3", "a@b", "@", "x@[192.168.0.1] y", "ip 256.1.1.1 and 1.1.1.1",
             "dotted 12.34.56 and 123.45.67.89.", "ｆｕｌｌ ８.８.８.８ digits", "٨.٨.٨.٨", "", "user@host and 9.9.9.9"]
    texts += [f"contact{i}@example.com from 93.184.216.{i}" for i in range(8)]  # the rotation advances
    if shared is not None:
        labels = shared / "labels"
        texts += [json.loads(line)["text"] for line in open(labels / "dclm-human-quality-agreement.jsonl")]
        texts += [t for t in pq.read_table(labels / "fineweb-llm-scored-legal-1.parquet").column("text").to_pylist()
                  if t]
    return texts


@pytest.mark.parametrize("real", [False, True])
def test_pii_formatter_gives_datatroves_text(real, request):
    """Skipping a regex on a text that cannot match leaves the text and the replacement rotation as datatrove's."""
    from datatrove.pipeline.formatters import PIIFormatter

    from shammie.filters.fineweb import make_pii_formatter

    shared = request.getfixturevalue("shared_data") if real else None
    texts = _pii_texts(shared)
    ours, theirs = make_pii_formatter(), PIIFormatter()
    got = [ours.format(t) for t in texts]   # one formatter over the whole sequence, as over a file
    want = [theirs.format(t) for t in texts]
    assert got == want
    changed = sum(a != b for a, b in zip(texts, want))
    assert changed >= (20 if real else 10), changed
    assert got[1] == "mail me at email@example.com today" and "10.0.0.1" in got[2] and "8.8.8.8" not in got[2]
