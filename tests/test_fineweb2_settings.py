"""FineWeb-2's languages: the settings files are generated from verbatim copies of FineWeb-2's published
configs and pipeline, and equal them; the word splitters load in a crawl worker's set-up."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from shammie.filters import language_settings as ls
from shammie.pipeline.errors import InputError

LANGUAGES = Path(ls.SETTINGS_DIR)
SOURCE = LANGUAGES / "fineweb-2"


def generator():
    spec = importlib.util.spec_from_file_location("generate_languages", LANGUAGES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git_blob(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_the_copies_are_fineweb2s_files_byte_for_byte():
    """PROVENANCE.md names each copied file's git blob in huggingface/fineweb-2 at the recorded commit."""
    table = dict(re.findall(r"^\| `([^`]+)` \| .*? \| `([0-9a-f]{40})`", (SOURCE / "PROVENANCE.md").read_text(), re.M))
    copies = sorted(str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*") if p.is_file() and p.name != "PROVENANCE.md")
    assert sorted(table) == copies
    for name, blob in table.items():
        if name != "fineweb2-language-distribution.csv":  # only its rows of the largest languages
            assert git_blob(SOURCE / name) == blob, name


def test_generated_files_are_what_the_generator_makes_from_the_copies():
    files = generator().generate()
    assert len(files) == 50
    for name, content in files.items():
        assert (LANGUAGES / name).read_text(encoding="utf-8") == content, f"{name}: run filters/languages/generate.py"
    assert {n[:-5] for n in files} | {"en"} == set(ls.available_languages())


def test_each_language_has_fineweb2s_values():
    """Independently of the generator: each file's numbers and stop words are the config's, the fixed
    arguments the pipeline's, the dedup settings its MinhashConfig's."""
    pipeline = (SOURCE / "fineweb-2-pipeline.py").read_text()
    assert "num_buckets=14" in pipeline and "hashes_per_bucket=8" in pipeline and "n_grams=5" in pipeline
    for code in ls.available_languages():
        if code == "en":
            continue
        s = ls.load_language_settings(code)
        config = yaml.safe_load((SOURCE / "configs" / f"{s.word_tokenizer}.yml").read_text(encoding="utf-8"))
        rep, qual, fw = s.filters["gopher_repetition"], s.filters["gopher_quality"], s.filters["fineweb_quality"]
        assert rep["dup_line_frac"] == config["dup_line_frac"], code
        assert rep["top_n_grams"] == config["top_n_grams"] and rep["dup_n_grams"] == config["dup_n_grams"], code
        assert (rep["dup_para_frac"], rep["dup_line_char_frac"], rep["dup_para_char_frac"]) == (0, 0, 0), code
        assert qual["stop_words"] == config["stopwords"] and qual["min_stop_words"] == 2, code
        assert qual["min_avg_word_length"] == config["min_avg_word_length"], code
        assert qual["max_avg_word_length"] == config["max_avg_word_length"], code
        assert qual["max_non_alpha_words_ratio"] == config["max_non_alpha_words_ratio"], code
        assert fw["line_punct_thr"] == config["line_punct_thr"] and fw["new_line_ratio"] == config["new_line_ratio"]
        assert (fw["short_line_thr"], fw["char_duplicates_ratio"]) == (999, 0.1), code
        assert "c4_quality" not in s.filters, code
        assert s.provenance["fineweb2_language_score"] == config["language_score"], code
        assert (s.dedup["ngram"], s.dedup["bands"], s.dedup["rows"]) == (5, 14, 8), code
    splits = {c for c in ls.available_languages() if ls.load_language_settings(c).dedup_splits_words}
    assert {"zh", "ja", "ko", "th", "vi", "hi"} <= splits and not splits & {"en", "de", "id", "ru", "ar"}


def test_the_fifty_largest_languages_include_indonesian_and_others_are_refused_naming_them():
    codes = ls.available_languages()
    assert len(codes) == 51 and "id" in codes
    settings = ls.load_language_settings("id")
    assert settings.name == "Indonesian" and settings.word_tokenizer == "ind_Latn"
    with pytest.raises(InputError) as refused:
        ls.settings_for(["id", "kk", "tlh"])
    assert str(refused.value) == ("--languages: no filter settings for kk, tlh (pages would be judged by English "
                                  f"rules); languages with settings: {', '.join(codes)}")


def test_a_crawl_worker_loads_its_languages_word_splitters_in_set_up(tmp_path):
    """jieba's dictionary (seconds) loads in CrawlStage.setup, not in the first task with a Chinese page,
    whose CPU would be billed to the first filter that splits words. In a fresh process."""
    import subprocess
    import sys

    pytest.importorskip("jieba")
    code = f"""
import jieba
from shammie.filters.crawl import CrawlOptions, CrawlStage
stage = CrawlStage({str(tmp_path / "job")!r}, CrawlOptions(inputs=("x",), output={str(tmp_path / "job")!r},
                                                           languages=("en", "zh")))
assert not jieba.dt.initialized
stage.setup()
print("initialized" if jieba.dt.initialized else "not initialized")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "initialized"
