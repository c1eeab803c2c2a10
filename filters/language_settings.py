"""Per-language filter settings, FineWeb-2 style, read from the data files in `filters/languages/`.

One `<code>.yaml` per language (`code` as lid.176 labels pages: ISO 639-1). Each file holds
- `word_tokenizer`: the key of datatrove's tokenizer assignments (`load_word_tokenizer`)
  that splits this language into words for the Gopher and FineWeb filters;
- `requires`: pip requirements of that word splitter beyond Shammie's own dependencies;
- `filters`: for each filter of the chain the language runs, the keyword arguments of
  datatrove's filter. A filter missing from the file does not run for that language
  (FineWeb-2 runs no C4 filter);
- `provenance`: where the numbers come from (file, commit, licence), also told in the
  file's header comment.

English (`en.yaml`) is FineWeb's recipe with datatrove's defaults; the others are
FineWeb-2's published settings. A language without a file is refused rather than
filtered with English rules, whose stop words and word lengths drop nearly every page of
another language.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any, Iterable

from shammie.pipeline.errors import InputError

SETTINGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "languages")
# The chain's per-language filters, in the order the crawl runs them (pipeline.crawl.FILTER_ORDER).
FILTER_SLOTS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
# Arguments a settings file may not set: the language comes from `word_tokenizer`, the C4
# terminal-punctuation rule from FineWebConfig.c4_terminal_punct (one place for each).
_RESERVED_ARGUMENTS = {"language", "exclusion_writer", "filter_no_terminal_punct"}


@dataclass(frozen=True)
class LanguageSettings:
    code: str
    name: str
    file_name: str
    word_tokenizer: str
    requires: tuple[str, ...]
    filters: dict[str, dict[str, Any]]
    provenance: dict[str, Any]

    def digest(self) -> str:
        """Hash of what decides the output (word splitter and filter arguments): editing a
        comment or the provenance does not make a finished crawl look changed."""
        content = json.dumps({"word_tokenizer": self.word_tokenizer, "filters": self.filters}, sort_keys=True,
                             ensure_ascii=False)
        return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]

    def record(self) -> str:
        """How a crawl's settings name these settings: `de.yaml sha256:0123456789abcdef`."""
        return f"{self.file_name} sha256:{self.digest()}"


def available_languages() -> tuple[str, ...]:
    """Codes of the languages that have settings, sorted."""
    return tuple(sorted(name[:-len(".yaml")] for name in os.listdir(SETTINGS_DIR) if name.endswith(".yaml")))


@lru_cache(maxsize=None)
def load_language_settings(code: str) -> LanguageSettings:
    import yaml

    file_name = f"{code}.yaml"
    path = os.path.join(SETTINGS_DIR, file_name)
    if code not in available_languages():
        raise InputError(_no_settings_message([code]))
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    problems = _check_file(code, data)
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return LanguageSettings(code=code, name=data["name"], file_name=file_name,
                            word_tokenizer=data["word_tokenizer"], requires=tuple(data.get("requires") or ()),
                            filters={slot: dict(data["filters"][slot]) for slot in FILTER_SLOTS
                                     if slot in data["filters"]},
                            provenance=dict(data["provenance"]))


def settings_for(languages: Iterable[str] | None) -> dict[str, LanguageSettings]:
    """Settings of `languages` (None: every language that has settings), in the given order.

    Refuses, naming the languages that have settings, when any has none; and, naming the
    package to install, when a language's word splitter is not installed. Both before any
    work: a crawl that started would fail on the first page of that language."""
    codes = available_languages() if languages is None else tuple(dict.fromkeys(languages))
    missing = [c for c in codes if c not in available_languages()]
    if missing:
        raise InputError(_no_settings_message(missing))
    settings = {c: load_language_settings(c) for c in codes}
    unmet = [(s, requirement, found) for s in settings.values() for requirement, found in _unmet(s.requires)]
    if unmet:
        packages = " ".join(sorted({f"'{r}'" for _, r, _ in unmet}))
        details = ", ".join(f"{s.code} needs {r} ({found})" for s, r, found in unmet)
        raise InputError(f"--languages: the word splitter is not installed for {details}; "
                         f"install it with: pip install {packages}")
    return settings


def _no_settings_message(missing: list[str]) -> str:
    return (f"--languages: no filter settings for {', '.join(missing)} (pages would be judged by English "
            f"rules); languages with settings: {', '.join(available_languages())}")


def _unmet(requirements: Iterable[str]) -> list[tuple[str, str]]:
    from packaging.requirements import Requirement

    unmet = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            unmet.append((text, "not installed"))
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            unmet.append((text, f"{version} is installed"))
    return unmet


def filter_parameters() -> dict[str, set[str]]:
    """The keyword arguments of datatrove's filter behind each slot."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)

    classes = {"gopher_repetition": GopherRepetitionFilter, "gopher_quality": GopherQualityFilter,
               "c4_quality": C4QualityFilter, "fineweb_quality": FineWebQualityFilter}
    return {slot: set(inspect.signature(cls.__init__).parameters) - {"self"} for slot, cls in classes.items()}


def _check_file(code: str, data: Any) -> list[str]:
    """What is wrong with a settings file, one line per problem (a typo in an argument name
    would otherwise silently leave datatrove's default in place)."""
    if not isinstance(data, dict):
        return ["not a mapping"]
    problems = []
    if data.get("language") != code:
        problems.append(f"language: {data.get('language')!r} does not match the file name")
    for key in ("name", "word_tokenizer"):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(f"{key}: must be a non-empty string")
    if not isinstance(data.get("requires", []), list):
        problems.append("requires: must be a list of pip requirements")
    if not isinstance(data.get("provenance"), dict) or not data.get("provenance"):
        problems.append("provenance: must say where the settings come from")
    filters = data.get("filters")
    if not isinstance(filters, dict) or not filters:
        return problems + ["filters: must map filter names to their arguments"]
    parameters = filter_parameters()
    for slot, arguments in filters.items():
        if slot not in FILTER_SLOTS:
            problems.append(f"filters.{slot}: unknown filter (known: {', '.join(FILTER_SLOTS)})")
            continue
        if not isinstance(arguments, dict):
            problems.append(f"filters.{slot}: must map argument names to values")
            continue
        for name in arguments:
            if name in _RESERVED_ARGUMENTS:
                problems.append(f"filters.{slot}.{name}: not settable here")
            elif name not in parameters[slot]:
                problems.append(f"filters.{slot}.{name}: not an argument of datatrove's filter")
    return problems
