"""The crawl's short cuts (filters/short_pages.py): pages too short for any kept language are dropped
before extraction (`short_page`) or right after it (`short_text`), and only pages the full path drops."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import SHARED_DATA
from shammie.filters.fineweb import install_word_tokenizer_memo
from shammie.filters.language_settings import LanguageSettings, settings_for
from shammie.filters.crawl import CrawlOptions, CrawlStage, FILTER_ORDER, format_summary
from shammie.filters.short_pages import SHORT_PAGE, SHORT_TEXT, PageCheck, ShortCuts
from shammie.pipeline.warc import iter_outcomes

SHARED_TOOLS = SHARED_DATA.parent / "tools"
BOUNDED = ["en", "de", "fr", "es", "it", "pt", "nl", "ru", "ar", "zh", "ja"]  # every language whose splitter is bounded


def _installed(codes):
    out = []
    for code in codes:
        try:
            settings_for([code])
        except Exception:  # its word splitter is not installed here (jieba, SudachiPy)
            continue
        out.append(code)
    return out


@pytest.fixture(scope="module")
def short_pages_warc(tmp_path_factory) -> Path:
    """2,000 short real pages from ../shared/tools/make_short_pages.py (DCLM texts in boilerplate)."""
    tool = SHARED_TOOLS / "make_short_pages.py"
    labels = SHARED_DATA / "labels" / "dclm-human-quality-agreement.jsonl"
    if not tool.exists() or not labels.exists():
        pytest.skip(f"{tool} or {labels} not found")
    out = tmp_path_factory.mktemp("short")
    subprocess.run([sys.executable, str(tool), str(labels), str(out), "2000", "--files", "1", "--seed", "3"],
                   check=True, capture_output=True)
    return out / "tiny-00000.warc.gz"


def _real_html(shared_data: Path, extra: list[Path] = ()) -> list[tuple[str, str]]:
    pages = []
    for path in sorted((shared_data / "html" / "article-extraction-benchmark" / "html").glob("*.html.gz")):
        pages.append((path.name, gzip.decompress(path.read_bytes()).decode("utf-8", "replace")))
    for path in sorted((shared_data / "warc").iterdir()) + list(extra):
        for o in iter_outcomes(str(path)):
            if o.page is not None and not o.page.is_text:
                pages.append((f"{path.name}@{o.offset}", o.page.content))
    return pages


@pytest.mark.shared_data
@pytest.mark.slow
def test_no_extracted_text_has_more_words_than_the_page_bound(shared_data, short_pages_warc):
    """The bound `short_page` uses is at least the words of what trafilatura extracts, for every
    language whose splitter it bounds, on every real page at hand (and extracting from the tree the
    check parsed gives the same text as extracting from the HTML)."""
    from shammie.filters.extract import make_extractor

    install_word_tokenizer_memo()
    codes = _installed(BOUNDED)
    assert "en" in codes
    languages = {c: ShortCuts(settings_for([c])).languages[0] for c in codes}
    check = PageCheck(ShortCuts(settings_for(["en"])), "trafilatura")
    pages = _real_html(shared_data, [short_pages_warc])
    assert len(pages) > 2300
    over, short, differ = [], Counter(), []
    for name, html in pages:
        text = make_extractor("trafilatura").extract(html)
        tree = check._parse(html)
        if tree is None:
            continue
        if make_extractor("trafilatura").extract(tree) != text:
            differ.append(name)
        nodes = check._texts(tree)
        texts = "\n".join(nodes)
        for code, language in languages.items():
            bound = language.bound(nodes, texts)
            words = language.count(text) if text else 0
            if words > bound:
                over.append((name, code, words, bound))
            short[code] += bound < language.minimum
    assert not differ
    assert not over
    assert short["en"] > 1000  # the bound is tight enough to matter: most short pages are under it


@pytest.mark.shared_data
def test_text_is_short_is_gopher_qualitys_own_verdict(shared_data):
    """On real texts cut to 1-120 words: `text_is_short` says True exactly when Gopher quality of every
    kept language would drop the text as too short."""
    import json
    import random

    from shammie.filters.gopher_quality import FastGopherQuality

    install_word_tokenizer_memo()
    codes = _installed(["en", "de", "zh", "ja", "ko"])
    settings = settings_for(codes)
    texts = [json.loads(line)["text"] for line in open(shared_data / "labels" / "dclm-human-quality-agreement.jsonl")]
    texts += [line.strip() for code in ("de", "zh", "ja", "ru")
              for line in open(shared_data / "lid" / f"{code}.txt")][::7]
    rng = random.Random(0)
    cut = []
    for t in texts:
        words = t.split()
        for n in (rng.randint(1, 40), rng.randint(40, 60), rng.randint(60, 120)):
            cut.append(" ".join(words[:n]) if len(words) > 1 else t[:n])
    from datatrove.data import Document

    filters = {c: FastGopherQuality(language=s.word_tokenizer, **s.filters["gopher_quality"])
               for c, s in settings.items()}

    def too_short(code, text):
        result = filters[code].filter(Document(text=text, id="x"))
        return result is not True and result[1] == "gopher_short_doc"

    alone = {c: ShortCuts({c: settings[c]}) for c in codes}
    together = ShortCuts(settings)
    verdicts = Counter()
    for text in cut:
        per_language = {c: too_short(c, text) for c in codes}
        for c in codes:
            assert alone[c].text_is_short(text) == per_language[c], (c, text[:80])
        assert together.text_is_short(text) == all(per_language.values())
        verdicts[all(per_language.values())] += 1
    assert verdicts[True] > 100 and verdicts[False] > 100


def _run(stage: CrawlStage, path: Path, out: Path, tag: str) -> dict:
    name = f"{tag}-{path.name}"
    funnel = stage.run_task({"url": str(path), "name": name}, str(out))
    kept = {r["id"]: r["text"] for r in pq.read_table(out / f"{name}.parquet").to_pylist()}
    removed = {r["id"]: r["reason"] for r in pq.read_table(Path(stage.job) / "removed" / f"{name}.parquet").to_pylist()}
    return {"funnel": funnel, "kept": kept, "removed": removed}


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("extractor, languages", [("trafilatura", ("en",)), ("resiliparse", ("en",)),
                                                  ("trafilatura", ("all",))])
def test_every_page_a_short_cut_drops_is_dropped_by_the_full_path(shared_data, short_pages_warc, tmp_path,
                                                                  extractor, languages):
    """The crawl task with and without the short cuts, on the shared crawls, 2,000 short pages and
    300 records of the benchmark corpus: the same documents with the same text are kept, and every
    page a short cut dropped was dropped by the full path."""
    corpus = tmp_path / "corpus"
    tool = SHARED_TOOLS / "make_corpus.py"
    files = sorted(p for p in (shared_data / "warc").iterdir()) + [short_pages_warc]
    if tool.exists():
        subprocess.run([sys.executable, str(tool), "--out", str(corpus), "-n", "300", "-k", "1"], check=True,
                       capture_output=True)
        files += sorted(corpus.glob("*.warc.gz"))
    if languages == ("all",):
        if _installed(["zh", "ja", "ko"]) != ["zh", "ja", "ko"]:
            pytest.skip("jieba, SudachiPy or Kiwi not installed")
        files = [f for f in files if f.name.startswith(("cc-2020-34", "edge-bad-status"))]
    job = tmp_path / "job"
    stage = CrawlStage(str(job), CrawlOptions(inputs=tuple(map(str, files)), output=str(job), extractor=extractor,
                                              languages=languages, keep_removed=True))
    stage.setup()
    cuts, check = stage.short_cuts, stage.page_check
    assert cuts.enabled and check.active == (extractor == "trafilatura" and languages == ("en",))
    off = ShortCuts({})
    out = tmp_path / "documents"
    out.mkdir()
    reasons = Counter()
    for path in files:
        stage.short_cuts, stage.page_check = cuts, check
        fast = _run(stage, path, out, "cuts")
        stage.short_cuts, stage.page_check = off, PageCheck(off, extractor)
        full = _run(stage, path, out, "full")
        assert fast["kept"] == full["kept"], path.name
        f = fast["funnel"]
        assert f["records_read"] == f["kept"] + sum(f["dropped"].values()) + sum(f["errors"].values())
        for page_id, reason in fast["removed"].items():
            if reason in (SHORT_PAGE, SHORT_TEXT):
                assert page_id not in full["kept"]
                reasons[f"{reason} -> {full['removed'].get(page_id, 'error')}"] += 1
        assert not full["funnel"]["dropped"].get(SHORT_PAGE) and not full["funnel"]["dropped"].get(SHORT_TEXT)
    assert sum(n for k, n in reasons.items() if k.startswith(SHORT_TEXT)) > (5 if languages == ("en",) else 2)
    if check.active:
        assert sum(n for k, n in reasons.items() if k.startswith(SHORT_PAGE)) > 1000
    # the cuts take over from the filters that would have dropped these pages
    assert {k.split(" -> ")[1] for k in reasons} <= {"extraction_empty", "language", "gopher_repetition",
                                                       "gopher_quality", "c4_quality", "fineweb_quality", "error"}


def test_a_job_keeping_korean_has_no_page_cut_but_counts_its_text():
    codes = _installed(["en", "ko"])
    if codes != ["en", "ko"]:
        pytest.skip("kiwipiepy not installed")
    install_word_tokenizer_memo()
    cuts = ShortCuts(settings_for(codes))
    assert cuts.enabled and not cuts.pages_bounded  # Kiwi's morphemes are not bounded by the page's characters
    assert not PageCheck(cuts, "trafilatura").active
    assert cuts.text_is_short("짧은 글입니다. Only a few words here.")
    assert not cuts.text_is_short(" ".join(["The committee met on Tuesday to review the budget."] * 10))


def test_a_language_without_a_word_minimum_turns_the_short_cuts_off():
    install_word_tokenizer_memo()
    english = settings_for(["en"])["en"]
    filters = {k: dict(v) for k, v in english.filters.items()}
    filters["gopher_quality"]["min_doc_words"] = 0  # datatrove skips the rule: no length is certain to drop
    edited = LanguageSettings(**{**english.__dict__, "code": "xx", "filters": filters})
    assert ShortCuts({"en": english}).text_is_short("Too short.")
    cuts = ShortCuts({"en": english, "xx": edited})
    assert not cuts.enabled and not cuts.text_is_short("Too short.")
    assert not cuts.page_is_short(["Too short."])


def test_the_raw_html_look_skips_script_and_style_and_stops_early():
    install_word_tokenizer_memo()
    cuts = ShortCuts(settings_for(["en"]))
    words = " ".join(f"word{k}" for k in range(200))
    assert cuts.may_be_short(f"<html><head><script>{words}</script><style>{words}</style></head>"
                             "<body><p>Two words</p></body></html>")
    assert not cuts.may_be_short(f"<html><body><p>{words}</p></body></html>")
    assert not cuts.may_be_short(words)  # text before any tag counts too


@pytest.mark.parametrize("body", [
    "<nav>{w}</nav><div class='sidebar'>The council met today.</div>",  # readability drops the sidebar
    "<header><a href='/'>Home</a></header><footer>{w}</footer>",
    "<noscript>{w}</noscript>",
])
def test_a_deleted_element_that_is_readabilitys_whole_article_is_not_a_short_page(body):
    """trafilatura's cleaning cannot delete the root of readability's article: a page whose one
    surviving <body> child is a <nav>, <footer>, <noscript>... gives that element's text."""
    from shammie.filters.extract import make_extractor

    install_word_tokenizer_memo()
    words = ("The river flooded the lower town after three days of rain, and the mayor asked families "
             "to move to the school on the hill until the water went down again. ") * 3
    html = f"<html><head><title>T</title></head><body>{body.format(w=words)}</body></html>"
    extracted = make_extractor("trafilatura").extract(html) or ""
    assert len(extracted.split()) >= 50  # what the full path hands the filters
    check = PageCheck(ShortCuts(settings_for(["en"])), "trafilatura")
    short, _ = check.examine(html)
    assert not short


def test_the_funnel_and_summary_name_the_short_cuts():
    assert FILTER_ORDER.index("url_filter") < FILTER_ORDER.index(SHORT_PAGE) < FILTER_ORDER.index("extraction_empty")
    assert FILTER_ORDER.index("extraction_empty") < FILTER_ORDER.index(SHORT_TEXT) < FILTER_ORDER.index("language")
    section = {"files": 1, "records_read": 5, "html_responses": 5, "extracted": 2, "kept": 1,
               "dropped": {SHORT_PAGE: 3, SHORT_TEXT: 1}, "errors": {}}
    lines = [line.split() for line in format_summary(section).splitlines()]
    assert ["dropped:", "short_page", "3"] in lines and ["dropped:", "short_text", "1"] in lines
    assert lines.index(["dropped:", "short_page", "3"]) < lines.index(["dropped:", "short_text", "1"])


@pytest.mark.shared_data
@pytest.mark.parametrize("code", ["en", "de", "fr", "es", "it", "pt", "nl", "ru"])
def test_text_nodes_joined_in_any_way_never_give_more_words_than_the_bound(shared_data, code):
    """Extraction may join text nodes without a space: every special case of the language's splitter
    cut into two or three text nodes, and joins of real words cut anywhere, never count more words
    than the bound gives for the nodes (spaCy's special cases can make more words of a run than its
    pieces give alone: "I'ma", "Cantve", "10a.m."; `_Glue` adds those)."""
    import json
    import random

    import spacy

    install_word_tokenizer_memo()
    language = ShortCuts(settings_for([code])).languages[0]
    texts = [json.loads(line)["text"] for line in open(shared_data / "labels" / "dclm-human-quality-agreement.jsonl")]
    texts += (shared_data / "lid" / f"{code}.txt").read_text(encoding="utf-8").splitlines()
    chunks = [w for t in texts for w in t.split()]
    rng = random.Random(0)
    strings = [k for k in spacy.blank(code).tokenizer.rules if k.strip()]
    strings += [rng.choice(chunks) + rng.choice(chunks) for _ in range(400)] + rng.sample(chunks, 400)
    over = []
    for s in strings:
        words = language.count(s)
        cuts = [()] + [(i,) for i in range(1, len(s))]
        if len(s) < 10:
            cuts += [(i, j) for i in range(1, len(s)) for j in range(i + 1, len(s))]
        for cut in cuts:
            nodes = [s[a:b] for a, b in zip((0,) + cut, cut + (len(s),))]
            if words > language.bound(nodes, "\n".join(nodes)):
                over.append(nodes)
                break
    assert not over


def test_a_job_with_dear_splitters_counts_after_language_id_in_the_pages_language():
    """Counting a text with jieba, SudachiPy or Kiwi in every kept language would cost more than
    language ID: such a job checks `short_text` after it, in the page's own language only."""
    from datatrove.data import Document

    from shammie.filters.fineweb import FILTER_LANGUAGE
    from shammie.filters.short_pages import ShortTextStep

    install_word_tokenizer_memo()
    assert ShortCuts(settings_for(["en", "de", "ru"])).before_language
    codes = _installed(["en", "zh"])
    if codes != ["en", "zh"]:
        pytest.skip("jieba not installed")
    cuts = ShortCuts(settings_for(codes))
    assert cuts.enabled and not cuts.before_language
    step = ShortTextStep(lambda: cuts)
    short = Document(text="The committee met on Tuesday.", id="a", metadata={FILTER_LANGUAGE: "en"})
    long = Document(text=" ".join(["The committee met on Tuesday to review the budget."] * 8), id="b",
                    metadata={FILTER_LANGUAGE: "en"})
    assert step.filter(short) == (False, None) and step.filter(long) is True
    assert not cuts.text_is_short_in(short.text, "xx")  # a language without settings: never certain
