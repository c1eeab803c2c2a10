"""Which domain (store sub-folder) each document goes to: `--group-by KEY`.

Two steps, because one of them needs the whole corpus:
1. `raw_domain_keys(table, key)` runs inside each per-file task and gives every row
   a raw key (the `edu_int_score` bucket, the language, the registered site, or the
   value of any metadata column).
2. `DomainFolder` runs in the driver once the keys are counted (in tasks,
   mixing/store_counts.py): it keeps the `top_k` most frequent keys, folds the rest
   into `other`, and turns each key into a safe path component. Its mapping (at most
   K entries, or 1000 without --top-k) is what the tokenize tasks apply.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from shammie.mixing.store_format import StoreError

BUILTIN_KEYS = ("edu", "language", "site")
OTHER = "other"
UNKNOWN = "unknown"
# Default `top_k` per key: registered sites are unbounded, the others are small sets.
DEFAULT_TOP_K = {"site": 100}
# A grouping that would create more folders than this is almost certainly a mistake
# (grouping by `id` or `url`); the user can still ask for it with an explicit --top-k.
MAX_DOMAINS_WITHOUT_TOP_K = 1000
EDU_MAX = 5
# Names we write at the top of a store; a domain folder must never collide with them.
RESERVED_NAMES = {"manifest.json", "_SUCCESS", "_staging", "_builds"}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(value: str | None) -> str:
    """A name usable as one path component on every filesystem and in S3 keys."""
    if value is None:
        return UNKNOWN
    name = _UNSAFE.sub("_", str(value)).strip("._-")[:100]
    if not name:
        return UNKNOWN
    if name in RESERVED_NAMES or name.startswith("tokenizer"):
        name = f"d_{name}"
    return name


def default_top_k(key: str) -> int | None:
    return DEFAULT_TOP_K.get(key)


def check_group_by(key: str, columns: Iterable[str]) -> None:
    columns = list(columns)
    if key == "edu":
        if "edu_int_score" not in columns and "edu_score" not in columns:
            raise StoreError(
                "--group-by edu needs an `edu_int_score` (or `edu_score`) column; the input has none. "
                "Run `shammie edu score` first or pick another --input-stage/--group-by."
            )
        return
    if key == "site":
        if "url" not in columns:
            raise StoreError("--group-by site needs a `url` column; the input has none")
        return
    if key not in columns:
        choices = ", ".join(sorted(set(BUILTIN_KEYS) | set(columns) - {"text"}))
        raise StoreError(f"--group-by {key!r}: no such column in the input. Choices: {choices}")
    if key == "text":
        raise StoreError("--group-by text makes no sense (one domain per document)")


def _edu_keys(table: pa.Table) -> list[str | None]:
    if "edu_int_score" in table.column_names:
        scores = table.column("edu_int_score").to_pylist()
    else:
        # The one rounding rule of scores (half up, clipped to 0-5), as edu_int_score is made:
        # Python's round() would put 2.5 in edu-2 (half to even) while edu_int_score says 3.
        from shammie.filters.edu_metrics import int_scores

        raw = table.column("edu_score").to_pylist()
        rounded = int_scores([0.0 if s is None else float(s) for s in raw])
        scores = [None if s is None else int(r) for s, r in zip(raw, rounded)]
    return [None if s is None else f"edu-{int(s)}" for s in scores]


_EXTRACTOR = None


def _site_extractor():
    # The bundled public-suffix snapshot, never the network (rule 2); built once per process.
    global _EXTRACTOR
    if _EXTRACTOR is None:
        import tldextract

        _EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    return _EXTRACTOR


def registered_site(url: str | None) -> str | None:
    """`www.bbc.co.uk/news` -> `bbc.co.uk`; hosts without a public suffix (IPs, localhost) -> the host."""
    if not url:
        return None
    parts = _site_extractor()(url)
    site = parts.top_domain_under_public_suffix
    if not site:
        try:
            site = urlsplit(url).hostname or ""
        except ValueError:
            site = ""
    return site.lower() or None


def raw_domain_keys(table: pa.Table, key: str) -> list[str | None]:
    """One raw key per row (None = missing); not yet folded or made path-safe."""
    if key == "edu":
        return _edu_keys(table)
    if key == "site":
        return [registered_site(u) for u in table.column("url").to_pylist()]
    column = table.column(key)
    if pa.types.is_floating(column.type):
        # Float metadata (scores) would give one domain per value; bucket to integers.
        column = pc.floor(column)
        return [None if v is None else str(int(v)) for v in column.to_pylist()]
    return [None if v is None else str(v) for v in column.to_pylist()]


def rank_key(pair) -> tuple:
    """The fold's total order of (raw key, count) pairs: most documents first, ties by key (None as "")."""
    key, count = pair
    return (-count, "" if key is None else key)


class DomainFolder:
    """Maps raw keys to final domain names: top-K by document count, the rest -> `other`.

    `counts` must hold every key that can be in the top-K (all keys, or the union of the
    partitions' local top-Ks, mixing/store_counts.py); `distinct` is the number of distinct
    keys of the whole input when `counts` holds fewer (for the refusal without --top-k)."""

    def __init__(self, counts: Counter, key: str, top_k: int | None, distinct: int | None = None):
        self.key = key
        self.top_k = top_k
        ranked = sorted(counts.items(), key=rank_key)
        distinct = max(len(ranked), distinct or 0)
        if top_k is None and distinct > MAX_DOMAINS_WITHOUT_TOP_K:
            raise StoreError(
                f"--group-by {key} gives {distinct} distinct values; pass --top-k N to keep the N largest "
                f"and fold the rest into {OTHER!r}"
            )
        kept = ranked if top_k is None else ranked[:top_k]
        self._names = {raw: self._name(raw) for raw, _ in kept}

    @staticmethod
    def _name(raw: str | None) -> str:
        return safe_component(raw)

    def __call__(self, raw: str | None) -> str:
        name = self._names.get(raw)
        return OTHER if name is None else name

    def names(self) -> list[str]:
        return sorted(set(self._names.values()))

    def mapping(self) -> list[list]:
        """[raw key, domain] of every kept key (JSON-able: None stays a key); any other key -> `other`."""
        return [[raw, name] for raw, name in self._names.items()]
