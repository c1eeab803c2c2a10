"""Read labelled text tables (Parquet, JSONL, CSV; local, s3://, hf://, ...) for training.

Paths go through fsspec (`shammie.pipeline.storage.get_fs`), so `hf://datasets/...`
works when huggingface_hub is installed and `s3://` honours AWS_ENDPOINT_URL.
A path may be a file, a folder (every table file inside it) or a glob.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa

from shammie.pipeline import storage
from shammie.pipeline.errors import InputError

_FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "json", ".json": "json", ".ndjson": "json",
    ".csv": "csv", ".tsv": "tsv",
}
_COMPRESSIONS = (".gz", ".zst", ".bz2", ".xz")


def table_format(path: str) -> str | None:
    name = path.lower()
    for comp in _COMPRESSIONS:
        if name.endswith(comp):
            name = name[: -len(comp)]
    for ext, fmt in _FORMATS.items():
        if name.endswith(ext):
            return fmt
    return None


def _with_scheme(url: str, fs_path: str) -> str:
    """Re-attach the URL scheme fsspec strips from listed paths."""
    if "://" in url and not url.startswith("file://"):
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{fs_path}"
    return fs_path


def expand_paths(paths: list[str]) -> list[str]:
    """Files behind each path (folders and globs expanded), in a stable order."""
    files: list[str] = []
    for url in paths:
        fs, path = storage.get_fs(url)
        if any(ch in url for ch in "*?["):
            matches = sorted(fs.glob(path))
        elif fs.isdir(path):
            matches = sorted(p for p in fs.find(path) if table_format(p)
                             and not posixpath.basename(p).startswith((".", "_")))
        elif fs.exists(path):
            matches = [path]
        else:
            raise InputError(f"{url}: no such file or folder")
        matches = [m for m in matches if table_format(m)]
        if not matches:
            raise InputError(f"{url}: no Parquet, JSONL or CSV files found (by extension)")
        files.extend(_with_scheme(url, m) for m in matches)
    return files


def read_any_table(url: str, columns: list[str]) -> pa.Table:
    """One table file as Arrow, only `columns` (each must exist)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    fmt = table_format(url)
    if fmt is None:
        raise InputError(f"{url}: unknown table format (use .parquet, .jsonl or .csv)")
    fs, path = storage.get_fs(url)
    try:
        with fs.open(path, "rb", compression="infer") as f:
            if fmt == "parquet":
                table = pq.read_table(f)
            elif fmt == "json":
                table = pajson.read_json(f)
            else:
                parse = pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True)
                table = pacsv.read_csv(f, parse_options=parse)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{url}: cannot read as {fmt}: {e}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"{url}: missing column(s) {missing}; it has {table.column_names} "
                        "(choose others with --text-column/--score-column/--label-column)")
    return table.select(columns)


def read_labelled(paths: list[str], text_column: str, label_column: str) -> tuple[list[str], list]:
    """Texts and labels from every file; rows with a missing text or label are dropped."""
    texts: list[str] = []
    labels: list = []
    for url in expand_paths(paths):
        table = read_any_table(url, [text_column, label_column])
        for text, label in zip(table[text_column].to_pylist(), table[label_column].to_pylist()):
            if text is None or label is None or (isinstance(label, float) and label != label):
                continue
            texts.append(str(text))
            labels.append(label)
    if not texts:
        raise InputError(f"no labelled rows in {', '.join(paths)}")
    return texts, labels
