"""Per-language filter settings (filters/languages/*.yaml): English stays FineWeb's chain,
other languages are judged by FineWeb-2's settings, languages without settings are refused.

Paragraphs are real sentences from ../shared/data/lid/<code>.txt (Leipzig corpora), read at
test time; those tests skip when the folder is absent. Languages whose word splitter is not
installed (jieba, SudachiPy, Kiwi) skip with the package to install."""

from __future__ import annotations

import dataclasses
import glob
import re
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest

from shammie.filters import language_settings as ls
from shammie.filters.fineweb import FILTER_LANGUAGE, FineWebConfig, build_steps
from shammie.filters.crawl import CrawlOptions, CrawlStage, crawl
from shammie.pipeline.errors import InputError, StageRefused
from shammie.pipeline.options import validate

LID_FILES = ("ar", "de", "en", "es", "fr", "it", "ja", "nl", "pt", "ru", "zh")  # the shared lid/ files we have settings for
# Korean has no file in ../shared/data/lid; this paragraph is written for the test (about
# Hangul, Seoul and kimchi-making), in plain encyclopedic Korean.
KOREAN = """한글은 조선의 제4대 임금인 세종대왕이 1443년에 창제하고 1446년에 반포한 문자이다. 처음에는 훈민정음이라는 이름으로 불렸으며, 백성을 가르치는 바른 소리라는 뜻을 담고 있다.
한글은 자음과 모음을 조합하여 음절을 만드는 방식으로 이루어져 있어 배우기 쉽고 읽기 편하다. 오늘날 한국에서는 매년 10월 9일을 한글날로 정하여 그 창제를 기념하고 있다.
서울은 한반도의 중서부에 있는 도시로, 한강이 도시의 가운데를 가로질러 흐른다. 조선 시대부터 수도였던 서울에는 경복궁과 창덕궁 같은 오래된 궁궐이 지금도 남아 있다.
도시의 북쪽에는 북한산이 있어 주말마다 많은 시민들이 산을 오르며 휴식을 즐긴다. 최근에는 한강 공원을 따라 자전거 길이 잘 정비되어 출퇴근에 자전거를 이용하는 사람도 늘었다.
김치는 배추나 무를 소금에 절인 뒤 고춧가루와 마늘, 젓갈 등으로 양념하여 발효시킨 음식이다. 가을이 끝날 무렵 여러 가족이 함께 모여 겨울 동안 먹을 김치를 담그는 일을 김장이라고 부른다.
김장 문화는 이웃과 음식을 나누는 공동체 정신을 보여 주며, 2013년에 유네스코 인류무형문화유산으로 등재되었다."""
MULTILINGUAL = ("en", "de", "zh", "ru", "ja", "ko")


def installed(codes) -> tuple[str, ...]:
    """The languages among `codes` whose word splitter is installed."""
    return tuple(c for c in codes if not ls._unmet(ls.load_language_settings(c).requires))


def skip_unless_installed(codes) -> None:
    missing = [f"{c} ({', '.join(r for r, _ in ls._unmet(ls.load_language_settings(c).requires))})"
               for c in codes if c not in installed([c])]
    if missing:
        pytest.skip(f"word splitter not installed for {', '.join(missing)}")


def paragraph(shared_data, code: str) -> str:
    """Eight lines of three real sentences each (only sentences with a terminal mark, as
    running text has), from the Leipzig sentences of the language."""
    if code == "ko":
        return KOREAN
    sentences = [s.strip() for s in (shared_data / "lid" / f"{code}.txt").read_text(encoding="utf-8").splitlines()]
    sentences = [s for s in sentences if s.endswith(tuple(".!?。！？"))]
    joiner = "" if code in ("zh", "ja") else " "  # no spaces between sentences in Chinese and Japanese
    return "\n".join(joiner.join(sentences[i * 3:i * 3 + 3]) for i in range(8))


def run_chain(steps, text: str, judged_as: str) -> tuple[str, float, list]:
    """Language ID, then the per-language filters with the settings of `judged_as`;
    returns the identified language, its score and each filter's (name, verdict)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters.base_filter import get_filter_result

    doc = Document(text=text, id="t")
    (_, lid), *filters = steps.text_filters
    lid.filter(doc)
    identified, score = doc.metadata["language"], doc.metadata["language_score"]
    doc.metadata[FILTER_LANGUAGE] = judged_as
    verdicts = [(name, get_filter_result(step.filter(doc))) for name, step in filters]
    return identified, score, verdicts


@pytest.fixture(scope="module")
def steps():
    return build_steps(FineWebConfig(languages=installed(ls.available_languages())))


# ---------------------------------------------------------------- the settings files


def test_settings_files_load_and_say_where_they_come_from():
    from datatrove.utils.word_tokenizers import load_tokenizer_assignments

    codes = ls.available_languages()
    assert set(codes) >= {"en", "de", "fr", "es", "zh", "ru", "ja", "ko"}
    assignments = load_tokenizer_assignments()
    for code in codes:
        s = ls.load_language_settings(code)  # refuses unknown filters and argument names
        text = open(f"{ls.SETTINGS_DIR}/{code}.yaml", encoding="utf-8").read()
        assert text.startswith(f"# {s.name} ({code}): "), code
        assert s.word_tokenizer in assignments, code
        assert set(s.filters) >= {"gopher_repetition", "gopher_quality", "fineweb_quality"}, code
        assert s.provenance["licence"].startswith("Apache-2.0"), code
        if code == "en":
            assert s.provenance["recipe_file"] == "examples/fineweb.py"
            assert re.fullmatch(r"[0-9a-f]{40}", s.provenance["recipe_file_commit"])
        else:
            assert s.provenance["repository"] == "https://github.com/huggingface/fineweb-2", code
            assert re.fullmatch(r"configs/[a-z]{3}_[A-Z][a-z]{3}\.yml", s.provenance["settings_file"]), code
            assert s.provenance["settings_file"][len("configs/"):-len(".yml")] == s.word_tokenizer, code
            assert re.fullmatch(r"[0-9a-f]{40}", s.provenance["commit"]), code
            assert "c4_quality" not in s.filters, code  # FineWeb-2 runs no C4 filter
            # the FineWeb-2 pipeline's fixed arguments
            assert s.filters["fineweb_quality"]["short_line_thr"] == 999, code
            assert s.filters["fineweb_quality"]["char_duplicates_ratio"] == 0.1, code
            assert s.filters["gopher_repetition"]["dup_para_frac"] == 0, code


def test_a_typo_in_a_settings_file_is_refused(tmp_path, monkeypatch):
    original = open(f"{ls.SETTINGS_DIR}/de.yaml", encoding="utf-8").read()
    assert "  new_line_ratio:" in original
    (tmp_path / "de.yaml").write_text(original.replace("  new_line_ratio:", "  newline_ratio:"), encoding="utf-8")
    monkeypatch.setattr(ls, "SETTINGS_DIR", str(tmp_path))
    ls.load_language_settings.cache_clear()
    try:
        with pytest.raises(InputError, match=r"filters\.fineweb_quality\.newline_ratio: not an argument"):
            ls.load_language_settings("de")
    finally:
        ls.load_language_settings.cache_clear()


def test_english_settings_are_fineweb_datatrove_defaults(steps):
    """English keeps exactly the chain it had: each English filter equals datatrove's filter
    built as FineWeb builds it (examples/fineweb.py), attribute for attribute."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    def state(step) -> dict:
        def plain(value):
            if isinstance(value, (list, tuple)):
                return tuple(plain(v) for v in value)
            return value
        return {k: plain(v) for k, v in vars(step).items() if k != "stats"}  # run counters, not settings

    fineweb = {"gopher_repetition": GopherRepetitionFilter(), "gopher_quality": GopherQualityFilter(),
               "c4_quality": C4QualityFilter(filter_no_terminal_punct=False), "fineweb_quality": FineWebQualityFilter()}
    ours = dict(steps.text_filters)
    for name, reference in fineweb.items():
        english = ours[name].per_language["en"]
        assert isinstance(english, type(reference)), name
        assert state(english) == state(reference), name


def test_each_filter_is_chosen_by_the_language_id_result(steps):
    """C4 runs for English only (FineWeb-2 runs none); a page that reached the filters
    without a language of the chain is an error, never silently judged by other rules."""
    from datatrove.data import Document

    c4 = dict(steps.text_filters)["c4_quality"]
    short = "Ein Satz.\nNoch einer.\nUnd ein dritter Satz hier."  # too few sentences for C4

    def judged(language):
        return c4.filter(Document(text=short, id="c4", metadata={FILTER_LANGUAGE: language}))

    assert judged("en") == (False, "too_few_sentences")
    assert judged("de") is True
    with pytest.raises(LookupError, match="no settings for the page's language 'tlh'"):
        judged("tlh")


def test_settings_record_ignores_comments_and_provenance_not_thresholds():
    german = ls.load_language_settings("de")
    assert german.record().startswith("de.yaml sha256:")
    assert dataclasses.replace(german, provenance={}).record() == german.record()
    stricter = {**german.filters, "fineweb_quality": {**german.filters["fineweb_quality"], "new_line_ratio": 0.1}}
    assert dataclasses.replace(german, filters=stricter).record() != german.record()


# ---------------------------------------------------------------- --languages


def test_languages_without_settings_are_refused_before_any_work(tmp_path):
    warc = tmp_path / "in.warc.gz"
    warc.write_bytes(b"")
    job = tmp_path / "job"
    with pytest.raises(InputError) as refused:
        crawl([str(warc)], str(job), languages=("en", "xx", "tlh"), progress=False)
    message = str(refused.value)
    assert "\n" not in message
    assert "no filter settings for xx, tlh" in message
    assert "languages with settings: " + ", ".join(ls.available_languages()) in message
    assert not job.exists()


def test_all_means_every_language_with_settings(tmp_path):
    skip_unless_installed(ls.available_languages())
    options = CrawlOptions(inputs=("x",), output=str(tmp_path / "job"), languages=("all",))
    stage = CrawlStage(str(tmp_path / "job"), options)
    assert tuple(stage.fineweb_config().language_settings()) == ls.available_languages()
    recorded = stage.settings()["language_settings"]
    assert list(recorded) == list(ls.available_languages())
    assert recorded["de"] == ls.load_language_settings("de").record()
    # 'all' with named languages is ambiguous
    mixed = CrawlOptions(inputs=("x",), output="job", languages=("all", "de"))
    assert validate(mixed, style="cli") == [
        "--languages: 'all' already keeps every language that has settings; name languages or 'all'"]


def test_language_codes_are_not_case_sensitive(tmp_path):
    options = CrawlOptions(inputs=("x",), output=str(tmp_path / "job"), languages=("EN", "De"))
    assert list(CrawlStage(str(tmp_path / "job"), options).settings()["language_settings"]) == ["en", "de"]


def test_missing_word_splitter_is_refused_naming_the_package(monkeypatch):
    real_version = ls.metadata.version

    def version(name):
        if name == "jieba":
            raise ls.metadata.PackageNotFoundError(name)
        if name == "kiwipiepy":
            return "0.24.1"
        return real_version(name)

    monkeypatch.setattr(ls.metadata, "version", version)
    with pytest.raises(InputError) as refused:
        ls.settings_for(["en", "zh", "ko"])
    message = str(refused.value)
    assert "zh needs jieba (not installed)" in message
    assert "ko needs kiwipiepy<0.22 (0.24.1 is installed)" in message
    assert "pip install 'jieba' 'kiwipiepy<0.22'" in message
    ls.settings_for(["en", "de"])  # spaCy languages need nothing more


def test_changed_language_settings_are_refused_on_rerun(ray_session, tmp_path, monkeypatch):
    from warc_fixtures import pages_for_each_filter, write_warc

    warcs = tmp_path / "warcs"
    warcs.mkdir()
    write_warc(warcs / "a.warc.gz", pages_for_each_filter(seed=3, good=2))
    crawl([str(warcs)], str(tmp_path / "job"), progress=False)

    edited = tmp_path / "languages"
    shutil.copytree(ls.SETTINGS_DIR, edited)
    english = (edited / "en.yaml").read_text(encoding="utf-8")
    (edited / "en.yaml").write_text(english.replace("new_line_ratio: 0.3", "new_line_ratio: 0.25"), encoding="utf-8")
    monkeypatch.setattr(ls, "SETTINGS_DIR", str(edited))
    ls.load_language_settings.cache_clear()
    try:
        with pytest.raises(StageRefused, match=r'settings changed \(language_settings: \{"en": "en.yaml sha256:'):
            crawl([str(warcs)], str(tmp_path / "job"), progress=False)
    finally:
        ls.load_language_settings.cache_clear()


# ---------------------------------------------------------------- real text per language


@pytest.mark.parametrize("code", sorted(set(LID_FILES) | {"ko"}))
def test_good_paragraph_passes_its_language_and_fails_english(request, steps, code):
    skip_unless_installed([code])
    shared_data = request.getfixturevalue("shared_data") if code != "ko" else None
    text = paragraph(shared_data, code)
    identified, score, own = run_chain(steps, text, judged_as=code)
    assert identified == code and score > 0.65
    assert all(verdict == (True, None) for _, verdict in own), own
    if code != "en":
        _, _, english = run_chain(steps, text, judged_as="en")
        assert any(verdict[0] is False for _, verdict in english), english


def test_page_kept_under_a_low_threshold_is_judged_by_the_requested_language(shared_data):
    """With --language-threshold below 0.5 a page can be kept for a requested language that is
    not its best guess: it is then filtered by that language's settings."""
    from datatrove.data import Document

    from shammie.filters.fineweb import make_language_filter, resolve_lid_model

    lid = make_language_filter(("de", "en"), 0.0, resolve_lid_model(None))
    doc = Document(text=paragraph(shared_data, "nl"), id="nl")
    assert lid.filter(doc)
    assert doc.metadata["language"] == "nl"
    assert doc.metadata[FILTER_LANGUAGE] in ("de", "en")


# ---------------------------------------------------------------- the shared multilingual crawls


def test_multilingual_crawl_keeps_several_languages(shared_data, ray_session, tmp_path, capsys):
    """The issue's case: `--languages en,de,zh,ru,ja,ko` on the real multilingual crawl kept one
    German page at most with English rules; with per-language settings it keeps pages in more
    than one non-English language."""
    skip_unless_installed(MULTILINGUAL)
    files = ["cc-2020-34-multilingual.warc.gz", "edge-bad-status-zh.warc.gz", "edge-bad-status-ko.warc.gz"]
    job = tmp_path / "job"
    section = crawl([str(shared_data / "warc" / f) for f in files], str(job), languages=MULTILINGUAL,
                    keep_removed=True, progress=False)
    assert section["records_read"] == section["kept"] + sum(section["dropped"].values()) + sum(
        section["errors"].values())
    kept: dict[str, Counter] = {}
    for path in sorted(glob.glob(str(job / "documents" / "*.parquet"))):
        for row in pq.read_table(path).to_pylist():
            kept.setdefault(row["warc_file"].rsplit("/", 1)[-1], Counter())[row["language"]] += 1
    with capsys.disabled():
        print(f"\n  documents kept per language with --languages {','.join(MULTILINGUAL)}:")
        for name in files:
            print(f"    {name}: {dict(kept.get(name, {})) or 'none'}")
        print(f"    dropped: {section['dropped']}")
    by_language = sum(kept.values(), Counter())
    assert set(by_language) <= set(MULTILINGUAL)
    assert len(set(by_language) - {"en"}) >= 2, by_language
    assert section["settings"]["language_settings"] == {
        code: ls.load_language_settings(code).record() for code in MULTILINGUAL}
    # per language: what language ID saw, kept, dropped per filter (seen = kept + dropped + errors)
    per_language = section["per_language"]
    for code, counts in per_language.items():
        assert counts["seen"] == counts["kept"] + sum(counts["dropped"].values()) + counts["errors"], code
        assert counts["kept"] == section["languages"].get(code, 0), code
    for name in ("language", "gopher_repetition", "gopher_quality", "fineweb_quality"):
        assert sum(c["dropped"].get(name, 0) for c in per_language.values()) == section["dropped"].get(name, 0), name
    assert sum(c["seen"] for c in per_language.values()) == section["extracted"] - sum(
        v for k, v in section["errors"].items() if k == "language_error")
    # removed/ says which language each page dropped after language ID was, with its score
    removed = [r for f in sorted(glob.glob(str(job / "removed" / "*.parquet"))) for r in pq.read_table(f).to_pylist()]
    after_lid = [r for r in removed if r["reason"] not in ("url_filter", "extraction_empty")
                 and not r["reason"].startswith("record_")]
    assert after_lid and all(r["language"] and r["language_score"] > 0.5 for r in after_lid)
    by_removed = Counter((r["language"], r["reason"]) for r in after_lid)
    assert by_removed == Counter({(code, name): n for code, c in per_language.items() for name, n in c["dropped"].items()})
    with capsys.disabled():
        shown = ", ".join(f"{c}: {v['seen']}/{v['kept']}" for c, v in per_language.items())
        print(f"    per language (seen by language ID / kept): {shown}")
