"""The filters' fast word splitter gives exactly spaCy's words (datatrove's SpaCyTokenizer), word for word."""

from __future__ import annotations

import gzip
import json

import pytest

from shammie.filters.words import CHUNKABLE, ChunkCachedWordTokenizer, fast_word_tokenizer

LID_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru")


def real_texts(shared) -> list[str]:
    """Real documents written by outsiders, and each of their lines (a line is a text the filters see too)."""
    import pyarrow.parquet as pq

    docs = [json.loads(line)["text"] for line in (shared / "labels" / "dclm-human-quality-agreement.jsonl").open()]
    docs += pq.read_table(shared / "labels" / "fineweb-llm-scored-legal-1.parquet")["text"].to_pylist()
    bench = shared / "html" / "article-extraction-benchmark"
    docs += [item["articleBody"] for item in json.loads((bench / "ground-truth.json").read_text()).values()]
    # raw HTML too: markup, entities and scripts are the hardest input for the affix rules
    docs += [gzip.decompress(p.read_bytes()).decode("utf-8", "replace")[:20000]
             for p in sorted((bench / "html").glob("*.html.gz"))[:60]]
    docs += _crawl_payloads(shared)
    lines = [ln for d in docs for ln in d.split("\n") if ln.strip()]
    return docs + lines


def _crawl_payloads(shared) -> list[str]:
    """The HTML of the shared crawls' responses (what extraction leaves of it is a subset of its chunks)."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for path in sorted((shared / "warc").glob("*.warc.gz")):
        try:
            with path.open("rb") as f:
                for record in ArchiveIterator(f):
                    if record.rec_type == "response":
                        body = record.content_stream().read()
                        if body:
                            out.append(body.decode("utf-8", "replace")[:20000])
        except Exception:  # the deliberately truncated fixtures: what was read is enough
            continue
    return out


@pytest.mark.shared_data
def test_english_words_equal_spacys_on_ten_thousand_real_texts(shared_data):
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    texts = real_texts(shared_data)
    assert len(texts) >= 10_000, len(texts)
    reference = SpaCyTokenizer("en")
    fast = ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    for rounds in range(2):  # cold cache, then warm
        differing = [t for t in texts if fast.word_tokenize(t) != reference.word_tokenize(t)]
        assert not differing, f"{len(differing)} texts differ, e.g. {differing[0][:200]!r}"
    assert fast.hits > fast.misses  # the cache is what makes it fast


@pytest.mark.shared_data
@pytest.mark.parametrize("language", LID_LANGUAGES)
def test_other_space_separated_languages_equal_spacys(shared_data, language):
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    sentences = [s for s in (shared_data / "lid" / f"{language}.txt").read_text().splitlines() if s.strip()]
    paragraphs = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
    reference, fast = SpaCyTokenizer(language), fast_word_tokenizer(SpaCyTokenizer(language))
    assert isinstance(fast, ChunkCachedWordTokenizer) and language in CHUNKABLE
    for text in sentences + paragraphs:
        assert fast.word_tokenize(text) == reference.word_tokenize(text), text


def test_a_special_case_straddling_a_space_is_left_to_spacy():
    """spaCy's phrase matcher finds `''` across `dogs' 'When` and it shadows the real `''`: the text around
    that space goes to spaCy, and the answer is spaCy's even though the chunks alone would say otherwise."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    for text in ("think so. ''When I", "the dogs' ''When I", "a b' 's c", "smile :) ok", "x ( : y", "it's 10 a.m. now"):
        assert fast.word_tokenize(text) == reference.word_tokenize(text), text
    assert fast.straddled_texts >= 1


def test_segmenting_languages_are_not_wrapped():
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    tokenizer = SpaCyTokenizer("zh")
    assert fast_word_tokenizer(tokenizer) is tokenizer


def test_texts_built_from_special_cases_equal_spacys():
    """Every special case next to pieces of the others, across spaces: the string pre-check that
    decides which boundaries need a closer look must never skip one where spaCy's matcher looks."""
    import random

    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    spacy_tokenizer = reference.tokenizer.tokenizer
    rules = sorted(spacy_tokenizer.rules)
    # the rules, their string prefixes, and their tokens: a case can then be cut at any token
    tokens = sorted({t.text for r in rules for t in fast._bare(r)})
    pieces = rules + [r[:n] for r in rules for n in range(1, len(r))] + tokens * 4 + ["dogs", "When", "so.", "x"]
    rng = random.Random(0)
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(2, 8))) for _ in range(20000)]
    differing = [t for t in texts if fast.word_tokenize(t) != reference.word_tokenize(t)]
    assert not differing, f"{len(differing)} texts differ, e.g. {differing[:3]!r}"
    assert fast.straddled_texts > 0


def test_long_texts_with_special_cases_in_their_middle_equal_spacys():
    """Around a space a special case may straddle, spaCy splits a stretch of the text, not all
    of it: built texts of up to 400 chunks, with pieces of special cases (often several close
    together, and extra spaces and newlines) amid ordinary words, get exactly spaCy's words."""
    import random

    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    rules = sorted(reference.tokenizer.tokenizer.rules)
    tricky = rules + [r[:n] for r in rules for n in range(1, len(r))] + ["''", "'", ":", ")", "(", "dogs'", "so."]
    plain = "the cat sat on a mat while it rained , and then 2 dogs ran off ( quickly ) .".split() + ["\n", "x\ny"]
    rng = random.Random(1)
    sent: list[int] = []
    split = fast._tokens_per_chunk
    fast._tokens_per_chunk = lambda chunks, *a, **k: (sent.extend(map(len, chunks)), split(chunks, *a, **k))[1]
    texts = []
    for _ in range(1500):
        pieces = [rng.choice(plain) for _ in range(rng.randint(20, 400))]
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(pieces))
            pieces[at:at] = [rng.choice(tricky) for _ in range(rng.randint(1, 4))]
        texts.append(rng.choice([" ", "  "]).join(pieces) if rng.random() < 0.2 else " ".join(pieces))
    differing = [t for t in texts if fast.word_tokenize(t) != reference.word_tokenize(t)]
    assert not differing, f"{len(differing)} texts differ, e.g. {differing[0][:300]!r}"
    assert fast.straddled_texts > 300
    assert max(sent) < max(map(len, texts)) // 2  # stretches went to spaCy, not whole texts


def test_special_cases_spread_over_three_chunks_equal_spacys():
    """A special case of 3+ tokens written with spaces between its tokens is a candidate of
    spaCy's matcher across two spaces; it is flagged at the first, and it can shadow a real
    case in the third chunk, so the stretch given to spaCy must reach past the flagged space
    (with only the two chunks around it, `youd. _ . thosed` and `: - )))-: That'll've` differ)."""
    import random

    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    rules = sorted(reference.tokenizer.tokenizer.rules)
    long_cases = [m for m in (tuple(t.text for t in fast._bare(r)) for r in rules) if len(m) >= 3]
    pieces = sorted({t for m in long_cases for t in m})
    rng = random.Random(0)
    texts = []
    for _ in range(20000):
        tokens = rng.choice(long_cases)
        cut = rng.randrange(1, len(tokens))
        right = tokens[cut:]
        k = rng.randrange(1, len(right)) if len(right) >= 2 else len(right)
        middle, tail = "".join(right[:k]), "".join(right[k:]) or rng.choice(rules)
        if right[k:]:
            tail += rng.choice(["", rng.choice(rules), rng.choice(pieces)])
        texts.append(" ".join([rng.choice(["x", "", rng.choice(rules)]) + "".join(tokens[:cut]), middle, tail,
                               rng.choice(rules)]))
    differing = [t for t in texts if fast.word_tokenize(t) != reference.word_tokenize(t)]
    assert not differing, f"{len(differing)} texts differ, e.g. {differing[:3]!r}"


def test_a_small_cache_that_drops_chunks_mid_text_keeps_spacys_words():
    """The cache drops its oldest chunks once full, also while a text's own chunks are in it."""
    import random

    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    rng = random.Random(3)
    vocabulary = ["the", "cat", "sat", "on", "mat.", "U.S.", "it's", "(see", "below)", ":)", "don't", "e.g.",
                  "10km", "co-op", "'s", "Mr.", "x"] + [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 200))) for _ in range(200)]
    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"), max_chunks=40)
    for text in texts + texts[::-1]:
        assert fast.word_tokenize(text) == reference.word_tokenize(text), text
        assert fast.count_sentences(text) == len(reference.span_tokenize(text)), text
    assert len(fast._cache) <= 40 + 200 and fast.misses > 2 * len(set(vocabulary))  # chunks were dropped and relearnt


def test_boundary_pairs_are_found_alike_in_python_and_numpy(monkeypatch):
    """Short texts take the Python loop, long ones numpy over code points: both name the same boundaries."""
    import random

    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    bridges = ChunkCachedWordTokenizer(SpaCyTokenizer("en"))._bridges
    rng = random.Random(5)
    pieces = ["a", "e.", ":", ")", "(", "'s", "’", "D", "o", ".O", "w", "/o", "8", "-", "𝔘", "\u00a0", "x\ty", "ಠ_ಠ", "°", "C."]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 60))) for _ in range(300)]
    texts += ["  lead :)", "trail :  ", ":  )", "e .", "e\u00a0.", "", " ", "𝔘 .", "\ud800 ."]
    found = []
    for numpy_from in (10**9, 0):
        monkeypatch.setattr(type(bridges), "NUMPY_FROM_CHUNKS", numpy_from)
        found.append([bridges.boundaries(t, [c for c in t.split(" ") if c]) for t in texts])
    assert found[0] == found[1]
    assert sum(map(len, found[0])) > 300 and found[0][texts.index("e .")] == [0]
    assert found[0][texts.index(":  )")] == [0]  # chunks next to each other, however many spaces between


def test_a_text_that_breaks_spacy_gets_datatroves_words():
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference, fast = SpaCyTokenizer("en"), ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    text = "a flag IS_ALPHA in the text, (twice) IS_ALPHA."
    assert fast.word_tokenize(text) == reference.word_tokenize(text)


SENTENCE_CASES = [
    "Hi.  .", "Hi. . there", "One. Two! Three? four", "a\tb. c", "e.g. this is it. U.S. is big.",
    "Wait... what?! Yes.", 'He said: "Go." Then he left.', "x。y！z？w", ":) fine. ok :-)", "  lead. trail  ",
    "No punctuation here at all", "Ends with a period.", "(Parenthetical.) Next one.", "Numbers 1.5 and 2. Then",
    "a  .  b", "Dr. Smith met Mrs. Jones at 5 p.m. yesterday.", "...", "!", "Hi.\u00a0There", "end .\" ( next",
    # runs of spaces (a whitespace token from two spaces on) between, before and after chunks,
    # whitespace inside chunks, a chunk that is only whitespace
    "Hi.  ", "Hi. ", "Hi.   .", "  . x", "   ", "a. \t. b", "x.\u00a0.", "x. \u00a0.", "x. \t .", "x.\t", "x . ) y",
    "ok.\u3000next", "(a.) b.  (c.)  d", "\"Yes.\"  \"No.\"", ":-)  . :)", "U.S.  . A.",
]


def test_sentence_count_equals_spacys_on_built_lines():
    """The count of datatrove's `split_into_sentences` (spaCy's sentencizer), whitespace tokens included."""
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    reference = SpaCyTokenizer("en")
    fast = ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    counts = {line: fast.count_sentences(line) for line in SENTENCE_CASES}
    assert counts == {line: len(reference.span_tokenize(line)) for line in SENTENCE_CASES}
    assert counts["Hi.  ."] == 2  # the extra space is a token that starts a sentence; without it, 1
    assert max(counts.values()) >= 3
    assert fast.count_sentences("a IS_ALPHA b. c") is None  # datatrove rewrites such a text: ask it


@pytest.mark.shared_data
def test_sentence_count_equals_spacys_on_real_lines(shared_data):
    from datatrove.utils.word_tokenizers import SpaCyTokenizer

    lines = [ln.strip() for t in real_texts(shared_data) for ln in t.splitlines() if len(ln.split()) >= 3]
    lines = list(dict.fromkeys(lines))[:20_000]
    assert len(lines) >= 10_000, len(lines)
    reference = SpaCyTokenizer("en")
    fast = ChunkCachedWordTokenizer(SpaCyTokenizer("en"))
    differing = [ln for ln in lines if fast.count_sentences(ln) != len(reference.span_tokenize(ln))]
    assert not differing, f"{len(differing)} lines differ, e.g. {differing[0][:200]!r}"
