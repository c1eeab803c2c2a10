"""`shammie shard`: job directory -> domain-grouped, tokenized shard store.

1. Pick the tokenizer: the user's `.model`, a freshly trained one (on a sample of
   the input, saved in `STORE/_staging/` so a re-run reuses it), or the one the
   store already has.
2. One Ray task per input Parquet file (pipeline.parallel.run_tasks): compute each
   row's raw domain key and token ids, write `STORE/_staging/<work>/<task>.parquet`.
   Tokenizing is the CPU-heavy part, so it is the parallel part.
3. The driver folds raw keys into domains (top-K + `other`) with the global counts,
   then streams the staging files in input order into per-domain shards
   (StoreWriter), so the store's document order is deterministic: input file, then row.
4. Manifest last, then old builds' files and the staging folder are deleted.

`<work>` hashes everything the tasks depend on (input files, tokenizer, group-by),
so a crashed run resumes its finished tasks and a changed one starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import time
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shammie.mixing import domains as dom
from shammie.mixing import store_format as fmt
from shammie.mixing.store_format import StoreError
from shammie.mixing.store_writer import DEFAULT_SHARD_TOKENS, StoreWriter
from shammie.mixing.tokenizer import DEFAULT_SAMPLE_BYTES, Tokenizer, sample_texts, train_tokenizer
from shammie.pipeline import jobdir, storage
from shammie.pipeline.documents import read_table, write_table

DEFAULT_VOCAB = 32000
KEY_COLUMN = "_domain_key"
TOKENS_COLUMN = "_tokens"
N_TOKENS_COLUMN = "n_tokens"


def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _input_fingerprint(files: list[str]) -> list[tuple[str, dict]]:
    """Each input with what identifies its content (the runner's fingerprint: size and checksum, or ETag)."""
    return [(url, storage.file_fingerprint(url) or {}) for url in files]


# ---------------------------------------------------------------- per-file task (runs on Ray workers)

_TOKENIZERS: dict[str, Tokenizer] = {}


def _worker_tokenizer(model_proto: bytes) -> Tokenizer:
    key = hashlib.sha256(model_proto).hexdigest()
    if key not in _TOKENIZERS:
        _TOKENIZERS.clear()
        _TOKENIZERS[key] = Tokenizer(model_proto)
    return _TOKENIZERS[key]


def tokenize_file(payload: dict[str, Any]) -> dict[str, Any]:
    """Input Parquet -> staging Parquet: the same rows + n_tokens, raw domain key, token ids."""
    start = time.monotonic()
    table = read_table(payload["input"])
    tokenizer = _worker_tokenizer(payload["tokenizer"])
    keys = dom.raw_domain_keys(table, payload["group_by"])
    from shammie.pipeline.parallel import report_progress

    tokens, lengths = tokenizer.encode_documents(table.column("text").to_pylist(), threads=payload.get("threads", 1),
                                                 on_batch=report_progress)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    token_lists = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(tokens))
    if N_TOKENS_COLUMN in table.column_names:
        table = table.drop_columns([N_TOKENS_COLUMN])
    table = (table.append_column(N_TOKENS_COLUMN, pa.array(lengths, pa.int64()))
             .append_column(KEY_COLUMN, pa.array(keys, pa.string()))
             .append_column(TOKENS_COLUMN, token_lists))
    write_table(table, payload["output"])
    counts = Counter(keys)
    return {"documents": table.num_rows, "tokens": int(lengths.sum()),
            "keys": sorted(([k, c] for k, c in counts.items()), key=lambda kc: (kc[0] is None, kc[0] or "")),
            "seconds": round(time.monotonic() - start, 3)}


# ---------------------------------------------------------------- driver

def _resolve_tokenizer(store: str, files: list[str], *, tokenizer: str | None, train_vocab: int | None,
                       tokenizer_type: str, sample_bytes: int, workers: int | None, progress: bool) -> Tokenizer:
    if tokenizer and train_vocab:
        raise StoreError("pass either --tokenizer MODEL or --train-tokenizer VOCAB, not both")
    if tokenizer:
        return Tokenizer.load(tokenizer)
    if not train_vocab:
        existing, problem = published_manifest(store)
        if problem:
            # Training a new tokenizer instead would silently change every token id.
            raise fmt.ManifestError(f"cannot reuse the store's tokenizer: {problem}. Pass --tokenizer MODEL "
                                    "or --train-tokenizer VOCAB to rebuild the store")
        if existing:
            tok = Tokenizer.load(storage.join(store, existing["tokenizer"]["path"]))
            tok.source = existing["tokenizer"].get("source") or tok.source
            tok.train_recipe = existing["tokenizer"].get("train_recipe")
            if progress:
                print(f"shard: reusing the store's tokenizer ({tok.vocab_size} pieces)")
            return tok
        train_vocab = DEFAULT_VOCAB
    recipe = {"inputs": _input_fingerprint(files), "vocab": train_vocab, "type": tokenizer_type,
              "sample_bytes": sample_bytes, "format": fmt.FORMAT_VERSION}
    recipe_id = _digest(recipe)
    cached = storage.join(store, fmt.STAGING, f"tokenizer-train-{recipe_id}.model")
    existing, _ = published_manifest(store)
    if existing and existing["tokenizer"].get("train_recipe") == recipe_id:
        # Already trained by the build that is published: reuse it, so re-runs stay up to date.
        tok = Tokenizer.load(storage.join(store, existing["tokenizer"]["path"]))
    elif storage.exists(cached):
        tok = Tokenizer(storage.read_bytes(cached), source=f"trained {tokenizer_type} {train_vocab}")
    else:
        if progress:
            print(f"shard: training a {tokenizer_type} tokenizer ({train_vocab} pieces) "
                  f"on up to {sample_bytes / 1e6:.0f} MB of the input")
        tok = train_tokenizer(sample_texts(files, sample_bytes), train_vocab, tokenizer_type,
                              num_threads=workers or os.cpu_count() or 1)
        storage.write_bytes_atomic(cached, tok.model_proto)
    tok.source = f"trained {tokenizer_type} {train_vocab} on {sample_bytes} bytes of the input"
    tok.train_recipe = recipe_id
    return tok


def published_manifest(store: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the store's valid manifest or None, what is wrong with it if it exists but is unusable)."""
    url = storage.join(store, fmt.MANIFEST)
    try:
        manifest = storage.read_json(url)
        return (None if manifest is None else fmt.check_manifest(manifest, url)), None
    except (ValueError, OSError) as e:
        return None, str(e)


def _task_name(i: int, url: str) -> str:
    base = posixpath.basename(url.rstrip("/")).rsplit(".parquet", 1)[0]
    return f"{i:05d}-{dom.safe_component(base)}"


def _all_done(staging: str, work_id: str, names: list[str]) -> bool:
    return all(storage.exists(jobdir.task_marker_path(staging, work_id, n)) for n in names)


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _run_in_process(staging: str, work_id: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = tokenize_file(payload)
    jobdir.write_task_marker(staging, work_id, name, result)
    return result


def _group_rows(keys: list[str | None], folder: dom.DomainFolder) -> dict[str, np.ndarray]:
    """Row numbers per domain, each in input order."""
    names = [folder(k) for k in keys]
    uniq = sorted(set(names))
    code_of = {n: i for i, n in enumerate(uniq)}
    codes = np.fromiter((code_of[n] for n in names), dtype=np.int64, count=len(names))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
    return {d: order[bounds[i]:bounds[i + 1]] for i, d in enumerate(uniq)}


def _assemble(writer: StoreWriter, staging_files: list[str], folder: dom.DomainFolder, progress: bool,
              total_tokens: int) -> None:
    from tqdm import tqdm

    bar = tqdm(total=total_tokens, desc="shard: write", unit="tok", unit_scale=True,
               disable=not progress, dynamic_ncols=True)
    try:
        for url in staging_files:
            table = read_table(url)
            groups = _group_rows(table.column(KEY_COLUMN).to_pylist(), folder)
            for domain, rows in groups.items():
                part = table.take(pa.array(rows))
                lists = part.column(TOKENS_COLUMN).combine_chunks()
                tokens = lists.flatten().to_numpy(zero_copy_only=False)
                lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
                writer.add(domain, part.drop_columns([KEY_COLUMN, TOKENS_COLUMN]), tokens, lengths)
                bar.update(len(tokens))
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()


def build_store(job: str, store: str | None = None, *, group_by: str = "edu", tokenizer: str | None = None,
                train_tokenizer: int | None = None, tokenizer_type: str = "bpe", seq_len: int = fmt.DEFAULT_SEQ_LEN,
                top_k: int | None = None, input_stage: str | None = None, workers: int | None = None,
                ray_address: str | None = None, progress: bool = True,
                shard_tokens: int = DEFAULT_SHARD_TOKENS,
                tokenizer_sample_bytes: int = DEFAULT_SAMPLE_BYTES,
                keep_builds: int = fmt.DEFAULT_KEEP_BUILDS, input_files: list[str] | None = None) -> dict[str, Any]:
    """Build (or rebuild) the shard store of `job` at `store` (default `<job>/store`); return the stats.

    `keep_builds`: how many published builds keep their files (this one included), so that
    readers pinned to an older build keep working through `keep_builds - 1` rebuilds."""
    t0 = time.monotonic()
    store = store or storage.join(job, jobdir.STORE)
    if storage.get_fs(store)[1].rstrip("/") == storage.get_fs(job)[1].rstrip("/"):
        # The store deletes stale files of its own naming patterns; keep it off the job's folders.
        raise StoreError(f"--store {store} is the job directory itself; use a folder of its own (default DIR/store)")
    if seq_len < 1:
        raise StoreError("--seq-len must be at least 1")
    if top_k is not None and top_k < 1:
        raise StoreError("--top-k must be at least 1")
    if shard_tokens < 1:
        raise StoreError("--shard-tokens must be at least 1")
    if keep_builds < 1:
        raise StoreError("keep_builds must be at least 1 (the build being published)")
    stage = jobdir.resolve_input_stage(job, input_stage)
    # The stage runner passes the files recorded in the input folder's _SUCCESS (checked there).
    files = list(input_files) if input_files is not None else jobdir.stage_files(job, stage)
    if not files:
        raise StoreError(f"{jobdir.stage_path(job, stage)} holds no Parquet files")
    fs, first = storage.get_fs(files[0])
    with fs.open(first, "rb") as f:
        schema = pq.read_schema(f)
    if "text" not in schema.names:
        raise StoreError(f"{files[0]} has no `text` column")
    dom.check_group_by(group_by, schema.names)
    effective_top_k = top_k if top_k is not None else dom.default_top_k(group_by)

    tok = _resolve_tokenizer(store, files, tokenizer=tokenizer, train_vocab=train_tokenizer,
                             tokenizer_type=tokenizer_type, sample_bytes=tokenizer_sample_bytes,
                             workers=workers, progress=progress)
    staging = storage.join(store, fmt.STAGING)
    work_id = _digest({"inputs": _input_fingerprint(files), "tokenizer": tok.sha256, "group_by": group_by,
                       "format": fmt.FORMAT_VERSION})
    tasks = [(_task_name(i, url), {"input": url, "output": storage.join(staging, work_id, f"{_task_name(i, url)}.parquet"),
                                   "tokenizer": tok.model_proto, "group_by": group_by})
             for i, url in enumerate(files)]
    names = [n for n, _ in tasks]
    build_id = _digest({"work": work_id, "top_k": effective_top_k, "seq_len": seq_len,
                        "shard_tokens": shard_tokens})
    existing, _ = published_manifest(store)   # a damaged one is simply replaced
    if existing and existing["build_id"] == build_id:
        # Same inputs, tokenizer and options as the published store: nothing to do, and
        # rewriting would touch files the current manifest points at.
        if progress:
            print(f"shard: {store} is up to date (build {build_id})")
        stats = _stats(existing, store=store, stage=stage, seconds=time.monotonic() - t0,
                       tokenize_seconds=0.0, write_seconds=0.0)
        stats["up_to_date"] = True
        jobdir.update_stats(job, "shard", stats)
        return stats
    t_tok = time.monotonic()
    if _all_done(staging, work_id, names):
        results = {n: jobdir.read_task_marker(staging, work_id, n) for n in names}
    elif len(tasks) == 1 and not ray_address and not _ray_running():
        # One file gives Ray nothing to parallelise, and starting it costs ~15 s.
        # sentencepiece's own threads still use the cores.
        name, payload = tasks[0]
        payload = dict(payload, threads=workers or os.cpu_count() or 1)
        results = {name: _run_in_process(staging, work_id, name, payload)}
    else:
        from shammie.pipeline.parallel import run_tasks
        from shammie.pipeline.ray_runtime import init_ray

        init_ray(ray_address, workers)
        results = run_tasks(staging, work_id, tasks, tokenize_file, desc="shard: tokenize", progress=progress)
    tokenize_seconds = time.monotonic() - t_tok

    counts: Counter = Counter()
    for n in names:
        counts.update({k: c for k, c in results[n]["keys"]})
    folder = dom.DomainFolder(counts, group_by, effective_top_k)
    total_tokens = sum(int(results[n]["tokens"]) for n in names)

    t_write = time.monotonic()
    staging_schema = _staging_schema(storage.join(staging, work_id, f"{names[0]}.parquet"))
    text_schema = pa.schema([f for f in staging_schema if f.name not in (KEY_COLUMN, TOKENS_COLUMN)])
    writer = StoreWriter(store, tok, build_id=build_id, text_schema=text_schema, seq_len=seq_len,
                         shard_tokens=shard_tokens, keep_builds=keep_builds,
                         info={"group_by": group_by, "top_k": effective_top_k,
                               "input": {"job": job, "stage": stage, "files": len(files)}})
    _assemble(writer, [storage.join(staging, work_id, f"{n}.parquet") for n in names], folder, progress,
              total_tokens)
    manifest = writer.commit()
    storage.remove(staging)
    write_seconds = time.monotonic() - t_write

    stats = _stats(manifest, store=store, stage=stage, seconds=time.monotonic() - t0,
                   tokenize_seconds=tokenize_seconds, write_seconds=write_seconds)
    jobdir.update_stats(job, "shard", stats)
    return stats


def _stats(manifest: dict[str, Any], *, store: str, stage: str, seconds: float, tokenize_seconds: float,
           write_seconds: float) -> dict[str, Any]:
    return {
        "store": store,
        "input_stage": stage,
        "group_by": manifest.get("group_by"),
        "top_k": manifest.get("top_k"),
        "build_id": manifest["build_id"],
        "documents": manifest["documents"],
        "tokens": manifest["tokens"],
        "domains": {d: {"documents": e["documents"], "tokens": e["tokens"], "shards": len(e["shards"])}
                    for d, e in manifest["domains"].items()},
        "tokenizer": {k: manifest["tokenizer"].get(k) for k in ("path", "source", "vocab_size", "eod_id", "model_type")},
        "token_dtype": manifest["token_dtype"],
        "seq_len": manifest["seq_len"],
        "seconds": round(seconds, 3),
        "tokenize_seconds": round(tokenize_seconds, 3),
        "write_seconds": round(write_seconds, 3),
        "tokens_per_s": round(manifest["tokens"] / max(seconds, 1e-9), 1),
    }


def _staging_schema(url: str) -> pa.Schema:
    fs, path = storage.get_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_schema(f)
