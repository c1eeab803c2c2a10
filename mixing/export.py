"""`shammie export STORE --format megatron|hf --output DIR`: a shard store in the formats trainers read.

- `megatron`: per domain one `<domain>.bin`/`<domain>.idx` pair in Megatron-LM's indexed
  dataset format (`megatron.core.datasets.indexed_dataset.IndexedDataset` reads it; so do
  NeMo and GPT-NeoX, which use the same format), the store's sentencepiece model as
  `tokenizer.model`, and `data_path.txt`: the `--data-path` blend `W1 PREFIX1 W2 PREFIX2 ...`
  with each domain weighted by its share of the store's tokens.
- `hf`: per domain one folder `data/<domain>/` of Parquet files (the store's text shards:
  every input column plus `n_tokens`) and a `README.md` dataset card whose YAML front matter
  declares one `datasets` config per domain plus one with every domain, so
  `datasets.load_dataset(DIR, name=DOMAIN)` loads a domain; the card lists domains, tokens
  and the job's filter funnel.

Documents keep the store's order and its tokens exactly: the store ends every document with
its end-of-document id (the tokenizer's `</s>`, `manifest.tokenizer.eod_id`), counted in
`n_tokens` and in the document index, so one store document is one Megatron document whose
last token is that id (what Megatron's `preprocess_data.py --append-eod` writes).

The export is written into a temporary folder next to DIR (`DIR.tmp-export-*`) and renamed
to DIR when complete, so an interrupted export leaves no file under a final name and a
previous export in DIR stays whole until the new one replaces it. DIR must be new, empty,
or a previous export (it holds `export.json`); it must be local (Megatron memory-maps the
files; copy them to object storage afterwards if needed). The store may be local or s3://.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from shammie.pipeline import jobdir, lineage, registry, storage
from shammie.pipeline.errors import ShammieError
from shammie.pipeline.options import option
from shammie.pipeline.stage import SELF_PUBLISHED, InputFile, Phase, Stage, Task

FORMATS = ("megatron", "hf")
RECORD = "export.json"
TEMP_MARKER = ".tmp-export-"

# Megatron-LM's indexed dataset (megatron/core/datasets/indexed_dataset.py, `_IndexWriter`).
MEGATRON_INDEX_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_INDEX_VERSION = 1
# Megatron's `DType` codes for the token dtypes an export writes.
MEGATRON_DTYPE_CODES = {np.dtype("<u2"): 8, np.dtype("<i4"): 4}
DATA_PATH_FILE = "data_path.txt"
MEGATRON_TOKENIZER_FILE = "tokenizer.model"

HF_DATA_FOLDER = "data"
HF_CARD = "README.md"
HF_ALL_CONFIG_CANDIDATES = ("all", "all-domains", "all-domains-combined")

# Rows of the token stream copied per write: bounds the memory of a dtype conversion.
COPY_CHUNK_TOKENS = 1 << 24
# Document indices written per chunk to the .idx (a domain may hold hundreds of millions).
INDEX_CHUNK = 1 << 22


class ExportError(ShammieError, ValueError):
    """The store cannot be exported as asked (bad output folder, a store that breaks the format's limits)."""


@dataclass(frozen=True)
class ExportOptions:
    store: str = option(help="shard store to export (folder or s3:// URL holding manifest.json)", kind="path",
                        positional=True, metavar="STORE", must_exist=True)
    format: str = option(help="megatron: .bin/.idx per domain + the --data-path blend; hf: Parquet per domain + a "
                         "README.md dataset card for `datasets.load_dataset`", choices=FORMATS)
    output: str = option(help="local folder to write; must be new, empty or an earlier export (replaced "
                         "when the new one is complete)", kind="output", metavar="DIR")
    build_id: str | None = option(None, help="export this kept build of the store instead of the current one "
                                  "(e.g. the build a checkpoint was trained on)", metavar="BUILD")
    progress: bool = option(True, help="say which domain is being written", off_help="write nothing while "
                            "exporting but the closing summary", yaml=False)

    def check_options(self):
        if storage.is_remote(self.output):
            yield "output", (f"must be a local folder, got {self.output}: Megatron memory-maps the files; export "
                             "locally and copy the folder to object storage")


# ---------------------------------------------------------------- entry point


def export_store(store: Any, output: str, format: str, *, build_id: str | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Export `store` (a path/URL or an open ShardStore) to `output`; returns the record written as export.json."""
    from shammie.mixing.store import ShardStore, open_store

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if not isinstance(store, ShardStore):
        store = open_store(store, build_id=build_id)
    elif build_id is not None and store.build_id != build_id:
        store = ShardStore(store.url, cache_dir=store.cache_dir, build_id=build_id)
    output = _local_output(output)
    _refuse_foreign_folder(output)
    writer = {"megatron": _write_megatron, "hf": _write_hf}[format]
    say = (lambda message: print(message, flush=True)) if progress else (lambda _message: None)
    return _publish(output, lambda tmp: writer(store, tmp, output, say))


def _local_output(output: str) -> str:
    if storage.is_remote(output):
        raise ExportError(f"--output must be a local folder, got {output}: Megatron memory-maps the files; export "
                          "locally and copy the folder to object storage")
    output = os.path.abspath(storage.strip_file_scheme(output)).rstrip(os.sep)
    if os.path.exists(output) and not os.path.isdir(output):
        raise ExportError(f"{output} exists and is not a folder")
    return output


def _refuse_foreign_folder(output: str) -> None:
    """`output` must be missing, empty or an earlier export: the export replaces the whole folder."""
    if not os.path.isdir(output) or not os.listdir(output):
        return
    try:
        with open(os.path.join(output, RECORD)) as f:
            json.load(f)
    except (OSError, ValueError):
        raise ExportError(f"{output} is not empty and holds no Shammie export ({RECORD}); export into a new or empty "
                          "folder (an earlier export there is replaced, anything else is left alone)") from None


def _publish(output: str, write: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Write the export into a temporary sibling folder, then rename it to `output` in one step.

    Why a folder and not file by file: a re-export renamed file by file could pair a new
    `.bin` with an old `.idx` if interrupted between the two; a folder rename cannot."""
    parent, name = os.path.split(output)
    os.makedirs(parent, exist_ok=True)
    for leftover in os.listdir(parent):
        # a killed earlier export of this folder (one export per folder at a time)
        if leftover.startswith(name + TEMP_MARKER):
            shutil.rmtree(os.path.join(parent, leftover), ignore_errors=True)
    tmp = os.path.join(parent, f"{name}{TEMP_MARKER}{uuid.uuid4().hex[:12]}")
    os.makedirs(tmp)
    started = time.monotonic()
    try:
        record = write(tmp)
        record["seconds"] = round(time.monotonic() - started, 3)
        record["tokens_per_s"] = round(record["tokens"] / record["seconds"]) if record["seconds"] > 0 else None
        record["exported_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        _write_file(os.path.join(tmp, RECORD), json.dumps(record, indent=1, sort_keys=True).encode())
        _fsync_dir(tmp)
        if os.path.isdir(output):
            # An earlier export (checked by _refuse_foreign_folder) or an empty folder: move it aside,
            # move the new one in, then delete the old one. DIR is missing only between the two renames.
            old = os.path.join(parent, f"{name}{TEMP_MARKER}old-{uuid.uuid4().hex[:12]}")
            os.rename(output, old)
            os.rename(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, output)
        _fsync_dir(parent)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return record


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _base_record(store, format: str) -> dict[str, Any]:
    manifest = store.manifest
    return {"format": format, "store": _recorded_store(store.url), "build_id": store.build_id,
            "tokenizer": {k: manifest["tokenizer"].get(k) for k in ("path", "sha256", "model_type", "vocab_size",
                                                                     "eod_id")},
            "group_by": manifest.get("group_by"), "documents": int(manifest["documents"]),
            "tokens": int(manifest["tokens"]), "domains": {}, "skipped_empty_domains": []}


def _recorded_store(url: str) -> str:
    """The store as an export records it (export.json beside the card, stats.json's `export`): relative
    to its job ("store") when it is a job's store, so the record names no local absolute path and stays
    true when the job moves; a store outside any job as it is. Its build id says which build it was."""
    parent = url.rstrip("/").rsplit("/", 1)[0] if "/" in url.rstrip("/") else None
    if parent and storage.exists(storage.join(parent, jobdir.STATS)):
        return jobdir.recorded_path(parent, url)
    return url


# ---------------------------------------------------------------- store internals


def _domain_shards(store, domain: str):
    """(shard number, token array, document offsets) of each shard of a domain, in store order.

    Each file is downloaded (s3) and checked against the manifest by the store (`_local_file`,
    same package), then memory-mapped here rather than through the reader's per-shard caches:
    an export walks every shard of every domain once, and the reader would keep every index
    in memory until the store is closed."""
    d = store._domain(domain)
    token_dtype = np.dtype(store.manifest["token_dtype"])
    index_dtype = np.dtype(store.manifest["index_dtype"])
    for k, shard in enumerate(d.shards):
        path = store._local_file(shard["files"]["tokens"])
        tokens = (np.memmap(path, dtype=token_dtype, mode="r") if os.path.getsize(path)
                  else np.empty(0, dtype=token_dtype))
        if len(tokens) != int(shard["tokens"]):
            raise ExportError(f"{path}: {len(tokens)} tokens, the manifest says {shard['tokens']}; "
                              "re-run `shammie shard`")
        path = store._local_file(shard["files"]["index"])
        offsets = np.memmap(path, dtype=index_dtype, mode="r")
        d.check_index(k, offsets, path)  # documents + 1 offsets, from 0 to the token count, non-decreasing
        yield k, tokens, offsets


def _verified_text_shard(store, entry: dict[str, Any]) -> str:
    """Local path of a text shard, downloaded and checked against the manifest by the store."""
    return store._local_file(entry)


# ---------------------------------------------------------------- megatron


def megatron_token_dtype(store_dtype: np.dtype, vocab_size: int) -> np.dtype:
    """uint16 stays uint16 (Megatron's own choice for vocabularies below 65500 and readable for any id
    below 65536); uint32 becomes int32, the only wider token dtype Megatron's tools write."""
    if np.dtype(store_dtype) == np.dtype("<u2"):
        return np.dtype("<u2")
    if vocab_size > np.iinfo(np.int32).max:
        raise ExportError(f"a vocabulary of {vocab_size} ids does not fit Megatron's int32 tokens")
    return np.dtype("<i4")


def _write_megatron(store, tmp: str, final: str, say: Callable[[str], None]) -> dict[str, Any]:
    # Hand-written rather than megatron-core's IndexedDatasetBuilder: megatron-core pulls in torch and
    # a training stack that users of an export (a data team, a NeMo or GPT-NeoX cluster) may not have
    # installed where the store lives; the format is a small fixed header plus three arrays. The tests
    # read the output with megatron-core's IndexedDataset.
    record = _base_record(store, "megatron")
    out_dtype = megatron_token_dtype(store.token_dtype, store.vocab_size)
    record["token_dtype"] = out_dtype.str
    shares: list[tuple[int, str]] = []
    for i, domain in enumerate(store.domains, 1):
        say(f"export: {domain} ({i}/{len(store.domains)} domains)")
        tokens = store.num_tokens(domain)
        if store.num_documents(domain) == 0:
            # Megatron cannot sample from a dataset without documents
            record["skipped_empty_domains"].append(domain)
            continue
        write_megatron_domain(store, domain, os.path.join(tmp, domain), out_dtype)
        record["domains"][domain] = {"documents": store.num_documents(domain), "tokens": tokens,
                                     "files": [f"{domain}.bin", f"{domain}.idx"]}
        shares.append((tokens, os.path.join(final, domain)))
    _write_file(os.path.join(tmp, MEGATRON_TOKENIZER_FILE), _tokenizer_bytes(store))
    line = data_path_line(shares)
    _write_file(os.path.join(tmp, DATA_PATH_FILE), (line + "\n").encode())
    record["data_path"] = line
    record["tokenizer_file"] = MEGATRON_TOKENIZER_FILE
    return record


def _tokenizer_bytes(store) -> bytes:
    with open(store.tokenizer_path, "rb") as f:
        return f.read()


def data_path_line(tokens_and_prefixes: list[tuple[int, str]]) -> str:
    """Megatron's `--data-path` blend: `W1 PREFIX1 W2 PREFIX2 ...`, W = the prefix's share of all tokens.

    Megatron normalises the weights itself; shares are written with 10 significant digits, so
    a domain holding a billionth of the tokens still gets a non-zero weight."""
    total = sum(t for t, _ in tokens_and_prefixes)
    if total <= 0:
        raise ExportError("the store has no tokens to export")
    for _, prefix in tokens_and_prefixes:
        if any(c.isspace() for c in prefix):
            raise ExportError(f"{prefix!r} contains whitespace, which Megatron's --data-path cannot hold; "
                              "export to a folder whose path has no spaces")
    return " ".join(f"{t / total:.10g} {prefix}" for t, prefix in tokens_and_prefixes)


def write_megatron_domain(store, domain: str, prefix: str, out_dtype: np.dtype) -> None:
    """`prefix.bin` (the domain's token stream) and `prefix.idx` (one sequence per document).

    .idx layout (little-endian): 9-byte header `MMIDIDX\\0\\0`, u64 version 1, u8 dtype code,
    u64 sequence count N, u64 document count N + 1, then int32 lengths[N], int64 byte
    pointers[N] into .bin, int64 document_indices[N + 1] = 0..N (each document is one sequence)."""
    eod = store.eod_id
    itemsize = out_dtype.itemsize
    num_docs = store.num_documents(domain)
    with open(prefix + ".bin", "wb") as bin_file:
        for k, tokens, offsets in _domain_shards(store, domain):
            _check_documents(domain, k, tokens, offsets, eod)
            for start in range(0, len(tokens), COPY_CHUNK_TOKENS):
                chunk = tokens[start:start + COPY_CHUNK_TOKENS]
                if chunk.dtype != out_dtype:
                    chunk = chunk.astype(out_dtype)
                bin_file.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))
        bin_file.flush()
        os.fsync(bin_file.fileno())
    with open(prefix + ".idx", "wb") as idx:
        idx.write(MEGATRON_INDEX_HEADER)
        idx.write(struct.pack("<Q", MEGATRON_INDEX_VERSION))
        idx.write(struct.pack("<B", MEGATRON_DTYPE_CODES[out_dtype]))
        idx.write(struct.pack("<Q", num_docs))
        idx.write(struct.pack("<Q", num_docs + 1))
        # Three passes over the shards' offsets, one per array: the .idx holds all lengths, then
        # all pointers, so streaming them keeps memory at one shard's index, whatever the domain size.
        for _, _, offsets in _domain_shards(store, domain):
            idx.write(np.diff(offsets).astype("<i4").tobytes())
        base = 0
        for _, tokens, offsets in _domain_shards(store, domain):
            idx.write(((offsets[:-1].astype(np.int64) + base) * itemsize).astype("<i8").tobytes())
            base += len(tokens)
        for start in range(0, num_docs + 1, INDEX_CHUNK):
            idx.write(np.arange(start, min(num_docs + 1, start + INDEX_CHUNK), dtype="<i8").tobytes())
        idx.flush()
        os.fsync(idx.fileno())


def _check_documents(domain: str, k: int, tokens: np.ndarray, offsets: np.ndarray, eod: int) -> None:
    """Every document of the shard is non-empty, ends with the end-of-document id, and fits int32 lengths."""
    if len(offsets) < 2:
        return
    lengths = np.diff(offsets)
    if int(lengths.min()) < 1:
        raise ExportError(f"domain {domain!r} shard {k}: an empty document (no end-of-document id); "
                          "the store is damaged, re-run `shammie shard`")
    if int(lengths.max()) > np.iinfo(np.int32).max:
        raise ExportError(f"domain {domain!r} shard {k}: a document of {int(lengths.max())} tokens is longer than "
                          "Megatron's int32 sequence lengths allow")
    last = tokens[offsets[1:].astype(np.int64) - 1]
    bad = np.flatnonzero(last != eod)
    if bad.size:
        raise ExportError(f"domain {domain!r} shard {k}: document {int(bad[0])} does not end with the "
                          f"end-of-document id {eod}; the store is damaged, re-run `shammie shard`")


# ---------------------------------------------------------------- hugging face


def _write_hf(store, tmp: str, final: str, say: Callable[[str], None]) -> dict[str, Any]:
    record = _base_record(store, "hf")
    for i, domain in enumerate(store.domains, 1):
        say(f"export: {domain} ({i}/{len(store.domains)} domains)")
        shards = [s for s in store.domain_info(domain)["shards"] if s["documents"] > 0]
        if not shards:
            # a folder without Parquet files would make its config unloadable
            record["skipped_empty_domains"].append(domain)
            continue
        folder = os.path.join(tmp, HF_DATA_FOLDER, domain)
        os.makedirs(folder)
        files = []
        for k, shard in enumerate(shards):
            # The store's text shards are already what `datasets` reads best: zstd Parquet, every
            # input column + n_tokens, 512-row row groups, never a zero-row group. Copied as they are.
            rel = f"{HF_DATA_FOLDER}/{domain}/train-{k:05d}-of-{len(shards):05d}.parquet"
            shutil.copyfile(_verified_text_shard(store, shard["files"]["text"]), os.path.join(tmp, rel))
            files.append(rel)
        record["domains"][domain] = {"documents": store.num_documents(domain), "tokens": store.num_tokens(domain),
                                     "files": files}
    if not record["domains"]:
        raise ExportError(f"{store.url} has no documents to export")
    record["all_config"] = next(c for c in HF_ALL_CONFIG_CANDIDATES if c not in store.domains)
    record["columns"] = _parquet_columns(os.path.join(tmp, next(iter(record["domains"].values()))["files"][0]))
    funnel, funnel_source, notes = job_funnel(store.manifest, store.url)
    _write_file(os.path.join(tmp, HF_CARD), dataset_card(store, record, funnel, funnel_source, notes).encode())
    return record


def _parquet_columns(path: str) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def job_funnel(manifest: dict[str, Any], store_url: str | None = None) -> tuple[list[tuple[str, int]], str, list[str]]:
    """Documents left after each step the store was built through, from its job's stats.json.

    Only the steps of the store's lineage (the folders it was built from, `pipeline/lineage.py`)
    are rows: a step that ran after the store was built is named in the notes instead of counted.
    Returns (rows, where the numbers come from, notes); no rows when the manifest names no job or
    the job has no stats (a store written from token arrays, a job directory not at hand). No
    local path is written: the card travels with the data."""
    job = (manifest.get("input") or {}).get("job") if isinstance(manifest.get("input"), dict) else None
    if not job:
        return [], "the store's manifest names no job", []
    try:
        stats = jobdir.read_stats(job)
    except (OSError, ValueError) as e:
        return [], f"the job's stats.json could not be read ({type(e).__name__})", []
    if not stats:
        return [], "the job that built the store has no stats.json", []
    record = jobdir.read_stage_record(store_url) if store_url else None
    links = lineage.chain(job, record) if record else []
    stages = {link.stage for link in links if link.stage} if links else None
    notes = lineage.stale(job, record, "the store") if record else []

    # the rows of each step the store was built through, from the step's own `funnel` (the report's too)
    rows = registry.funnel(stats, lambda section: section != "shard" and (stages is None or section in stages),
                           {link.stage: link.folder for link in links if link.stage})
    source = "the job's stats.json"
    if links:
        source += ", along the folders the store was built from: " + " -> ".join(f"{link.folder}/" for link in links)
    return rows, source, notes


def dataset_card(store, record: dict[str, Any], funnel: list[tuple[str, int]], funnel_source: str,
                 notes: list[str] | None = None) -> str:
    """README.md with YAML front matter: one config per domain (split `train`) plus one with every domain."""
    import yaml

    configs = [{"config_name": domain, "data_files": [{"split": "train", "path": f"{HF_DATA_FOLDER}/{domain}/*.parquet"}]}
               for domain in record["domains"]]
    configs.append({"config_name": record["all_config"], "default": True,
                    "data_files": [{"split": "train", "path": [f"{HF_DATA_FOLDER}/{d}/*.parquet"
                                                              for d in record["domains"]]}]})
    front = yaml.safe_dump({"configs": configs, "tags": ["shammie", "pretraining"]}, sort_keys=False,
                           allow_unicode=True)
    total_tokens = sum(v["tokens"] for v in record["domains"].values()) or 1
    tok = record["tokenizer"]
    lines = ["---", front.rstrip(), "---", "", f"# Shammie export of store build `{record['build_id']}`", "",
             f"Documents grouped by `{record.get('group_by')}` into {len(record['domains'])} domains; one `datasets` "
             f"config per domain (split `train`) and `{record['all_config']}` with every domain (the default).", "",
             "```python", "import datasets", "",
             f"one_domain = datasets.load_dataset(PATH, name={next(iter(record['domains']))!r}, split=\"train\")",
             f"everything = datasets.load_dataset(PATH, split=\"train\")   # config {record['all_config']!r}",
             "```", "",
             "## Domains", "", "| domain | documents | tokens | share of tokens |", "|---|---:|---:|---:|"]
    for domain, info in record["domains"].items():
        lines.append(f"| {domain} | {info['documents']:,} | {info['tokens']:,} | {info['tokens'] / total_tokens:.4f} |")
    lines.append(f"| **total** | {sum(v['documents'] for v in record['domains'].values()):,} | "
                 f"{total_tokens if record['domains'] else 0:,} | 1 |")
    if record["skipped_empty_domains"]:
        lines += ["", f"Domains without documents (not exported): {', '.join(record['skipped_empty_domains'])}."]
    lines += ["", "## Columns", "",
              f"{', '.join(f'`{c}`' for c in record['columns'])}. `n_tokens` counts the document's tokens in the "
              f"store's tokenizer ({tok.get('model_type')} sentencepiece, {tok.get('vocab_size')} pieces, sha256 "
              f"`{(tok.get('sha256') or '')[:12]}`), including the end-of-document token (id {tok.get('eod_id')}).",
              "", "## Filter funnel", ""]
    if funnel:
        lines += [f"Documents remaining after each step ({funnel_source}):", "", "| step | documents |", "|---|---:|"]
        lines += [f"| {step} | {count:,} |" for step, count in funnel]
        lines.append(f"| in the store | {record['documents']:,} |")
    else:
        lines.append(f"Not available: {funnel_source}.")
    if notes:
        lines += ["", "Not reflected in this data: " + "; ".join(notes) + "."]
    lines += ["", "## Provenance", "",
              f"Written by `shammie export --format hf` from the shard store `{storage.basename(record['store'])}` "
              f"(build `{record['build_id']}`). "
              "The steps the texts went through are the rows of the filter funnel above (only those); check the "
              "licences and terms of the sources before publishing.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- as a step of a job


def export_job(store: str, output: str) -> str:
    """The job directory `shammie export` records an export in: the job the store belongs to when it is
    at hand (a `stats.json` there: the report then shows the export): the store's parent folder (JOB/store),
    else the job its manifest names; else a folder of the export's own beside the output,
    `.<output>.shammie/` (its lock, record and stats), so the export folder holds nothing but the export."""
    try:
        manifest = storage.read_json(storage.join(store, "manifest.json"))
    except (ValueError, OSError):
        manifest = None
    made_by = (manifest or {}).get("input") if isinstance(manifest, dict) else None
    named = made_by.get("job") if isinstance(made_by, dict) else None
    parent = store.rstrip("/").rsplit("/", 1)[0] if "/" in store.rstrip("/") else None
    for job in (parent, named):
        if isinstance(job, str) and job and storage.exists(storage.join(job, jobdir.STATS)):
            return job
    output = _local_output(output)
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.shammie")


class ExportStage(Stage):
    """The export on the stage runner, for `shammie export` and as the last step of `shammie run`
    (`export:` in a job YAML): the job's lock, the store's manifest as the recorded input, the
    `export` section of stats.json, a re-run of the same export found complete.

    The export folder holds nothing but the export (Megatron and `datasets` read it as is), so the
    runner keeps its record and `_SUCCESS` in `JOB/_export/<output>-<digest>/` (one per output
    folder: a job's store may be exported to several); the folder itself is replaced whole by
    `export_store` (`publishing = SELF_PUBLISHED`)."""

    name = "export"
    output = "export"
    Options = ExportOptions
    publishing = SELF_PUBLISHED
    job_field = "store"

    def output_url(self) -> str:
        return _local_output(self.options.output)

    def bookkeeping_url(self) -> str:
        output = self.output_url()
        where = storage.relative_to(output, self.job) or output  # a moved job keeps its records
        digest = hashlib.sha256(where.encode()).hexdigest()[:8]
        return storage.join(self.job, "_export", f"{os.path.basename(output)}-{digest}")

    def resolve_inputs(self) -> list[InputFile]:
        manifest = storage.join(self.options.store, "manifest.json")
        fingerprint = storage.file_fingerprint(manifest)
        if fingerprint is None:
            raise ExportError(f"{self.options.store} is not a shard store (no manifest.json); run the shard step "
                              "first")
        return [InputFile(manifest, "manifest.json", fingerprint)]

    def read_section(self) -> dict[str, Any] | None:
        """The job's export section when it describes this export, else the export's own record."""
        try:
            with open(os.path.join(self.output_url(), RECORD)) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None  # the export folder is gone or damaged: not complete
        section = super().read_section()
        if isinstance(section, dict) and section.get("settings") == self.settings():
            return section
        return self.summarize({"export": record}) if isinstance(record, dict) else None

    def settings(self) -> dict[str, Any]:
        output = self.output_url()  # inside the job: by its job-relative path (a moved job keeps its settings)
        return {"format": self.options.format, "build_id": self.options.build_id,
                "output": storage.relative_to(output, self.job) or output}

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        return [Task("export", {})]

    def phases(self, ctx) -> Iterator[Phase]:
        # In the driver: the export folder is local to it, and export_store replaces it whole by itself.
        yield Phase("export", plan=lambda done: ctx.tasks, on_driver=True,
                    task=lambda payload: export_store(self.options.store, self.output_url(), self.options.format,
                                                      build_id=self.options.build_id, progress=ctx.run.progress))

    def summarize(self, results: dict[str, dict]) -> dict[str, Any]:
        record = dict(results["export"])
        # export.json's `seconds` is the writing alone; the section's `seconds` is the whole run (the runner's,
        # phases and Ray start-up within it, as for every stage)
        record["write_seconds"] = record.pop("seconds", None)
        record.setdefault("documents", sum(int(d.get("documents", 0)) for d in (record.get("domains") or {}).values()
                                           if isinstance(d, dict)) or None)
        return record

    def describe(self, section: dict[str, Any]) -> str:
        return f"export ({self.options.format}): {section.get('tokens')} tokens -> {self.output_url()}"
