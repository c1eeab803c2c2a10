"""`shammie shard`: job directory -> domain-grouped, tokenized shard store, assembled by workers.

1. Pick the tokenizer: the user's `.model`, a freshly trained one (on a bounded sample
   of the input, saved in `STORE/_staging/` so a re-run reuses it), or the one the
   store already has. It is written into the store first: the tasks load it from there.
2. Fold (mixing/store_counts.py): unless the domains are the raw keys themselves
   (`--group-by edu` without `--top-k`), count tasks and reduce tasks find the top-K
   keys (and the distinct count) through partitioned files; the driver ranks at most
   reducers x K keys and writes the mapping (<= K entries) to a file the tasks read.
3. Tokenize (mixing/store_pieces.py, one Ray task per contiguous group of input files):
   tokens and rows of each domain written straight into the store as final-format
   pieces under this build's names. Nothing goes through the driver.
4. Merge: consecutive small pieces of a domain become shards of at most
   `--shard-tokens` in merge tasks, which delete the pieces they consumed.
5. The driver writes the manifest (O(shards)), then the build record, `_SUCCESS`
   (with this build's stats) and deletes older builds' files (`publish_build`), then `_staging/`.

Order inside a domain is input file order, then row order: tasks cover contiguous
files, pieces are listed by (task, piece), merges join consecutive pieces only.

Resume: every phase writes task markers under `STORE/_staging/`; a re-run of the same
command skips finished tasks. The build id is a hash of everything the store's
content depends on (input fingerprints, tokenizer, group-by, top-k, seq-len, shard
size, task grouping), so a re-run with other settings starts a new build, and the
one published stays readable until the new manifest replaces it. `overwrite=True`
with unchanged settings makes a fresh build too (its id also hashes the build it replaces).

Driver memory: O(input files) for the task list, ~100 B per (task, domain) pair for
the merge plan (mixing/store_pieces.py), O(shards) for the manifest; no per-document
or per-token state (docs/store.md, "Scale").
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Sequence

import pyarrow.parquet as pq

from shammie.mixing import domains as dom
from shammie.mixing import store_counts as counts
from shammie.mixing import store_format as fmt
from shammie.mixing import store_pieces as pieces
from shammie.mixing.store_format import StoreError
from shammie.mixing.store_writer import DEFAULT_SHARD_TOKENS, new_manifest, publish_build, write_tokenizer
from shammie.mixing.tokenizer import DEFAULT_SAMPLE_BYTES, Tokenizer, sample_texts, train_tokenizer
from shammie.pipeline import jobdir, parallel, storage
from shammie.pipeline.stage import parquet_outputs_of

DEFAULT_VOCAB = 32000
# Tokenize tasks: one per input file up to MIN_TASKS files; beyond, contiguous groups of
# files of about TASK_BYTES of input Parquet (fewer, larger pieces per domain: the merge
# plan and the small files written grow with tasks x domains).
TASK_BYTES = 256 << 20
MIN_TASKS = 4096
# Count tasks read one column: about this much input Parquet each (their keys are ~100 B a row).
COUNT_TASK_BYTES = 256 << 20
# A piece at least this fraction of --shard-tokens stays a shard as it is; smaller ones are merged.
KEEP_FRACTION = 8
STAGE_RECORD = jobdir.STAGE_RECORD  # the stage runner's record of a store's inputs and settings (pipeline/runner.py)
_digest = pieces.digest


# ---------------------------------------------------------------- checks before work


def check_store_folder(store: str) -> None:
    """Refuse a `--store` folder that holds something other than a shard store (before any work).

    A store is a folder that is missing or empty (dotfiles aside), or holds a manifest, build
    records or a build under way (`_staging/`, or the stage runner's record of a shard run)."""
    names = [n for n in storage.listdir(store) if not n.startswith(".")]
    if not names or {fmt.MANIFEST, fmt.BUILDS, fmt.STAGING} & set(names):
        return
    if STAGE_RECORD in names:
        try:
            record = storage.read_json(storage.join(store, STAGE_RECORD))
        except ValueError:
            record = None
        if isinstance(record, dict) and record.get("stage") == "shard":
            return
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise StoreError(f"--store {store} is a folder that is not a shard store (it holds {shown} and no "
                     f"{fmt.MANIFEST}); pass a new or empty folder, or an existing store")


def _check_options(job: str, store: str, *, seq_len: int, top_k: int | None, shard_tokens: int,
                   keep_builds: int) -> None:
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


# ---------------------------------------------------------------- tokenizer


def _resolve_tokenizer(store: str, files: list[str], inputs: list, absolute: list, *, tokenizer: str | None,
                       train_vocab: int | None, tokenizer_type: str, sample_bytes: int, workers: int | None,
                       progress: bool) -> Tokenizer:
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
            tok.vocab_asked = existing["tokenizer"].get("vocab_asked")
            if progress:
                print(f"shard: reusing the store's tokenizer ({tok.vocab_size} pieces)")
            return tok
        train_vocab = DEFAULT_VOCAB
    recipe = {"inputs": inputs, "vocab": train_vocab, "type": tokenizer_type,
              "sample_bytes": sample_bytes, "format": fmt.FORMAT_VERSION}
    recipe_id = _digest(recipe)
    cached = storage.join(store, fmt.STAGING, f"tokenizer-train-{recipe_id}.model")
    existing, _ = published_manifest(store)
    legacy_id = _digest({**recipe, "inputs": absolute})  # an older Shammie's recipe: absolute input URLs
    if existing and existing["tokenizer"].get("train_recipe") in (recipe_id, legacy_id):
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
    tok.vocab_asked = train_vocab
    if tok.vocab_size < train_vocab:
        # sentencepiece takes what a small sample supports (hard_vocab_limit=False) instead of failing:
        # say so, since every token id and the store's compression depend on it
        print(f"warning: shard: the trained tokenizer has {tok.vocab_size} pieces, not the {train_vocab} asked: "
              f"its training sample ({sample_bytes / 1e6:g} MB at most of the input) holds too little distinct "
              "text. Train on more input (--tokenizer-sample-mb, a larger job), ask for fewer pieces, or pass "
              "--tokenizer MODEL", file=sys.stderr, flush=True)
    return tok


def published_manifest(store: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the store's valid manifest or None, what is wrong with it if it exists but is unusable)."""
    url = storage.join(store, fmt.MANIFEST)
    try:
        manifest = storage.read_json(url)
        return (None if manifest is None else fmt.check_manifest(manifest, url)), None
    except (ValueError, OSError) as e:
        return None, str(e)


# ---------------------------------------------------------------- running phases


def task_groups(sizes: Sequence[int], task_bytes: int, min_tasks: int) -> list[int]:
    """Files per task (contiguous, input order): one file each up to `min_tasks` files, else about
    `task_bytes` of input per task (a file larger than that is a task of its own)."""
    n = len(sizes)
    total = sum(sizes)
    tasks = min(n, max(1, min(n, min_tasks), math.ceil(total / max(task_bytes, 1))))
    if tasks >= n:
        return [1] * n
    target = total / tasks
    groups, current, current_bytes = [], 0, 0
    for i, size in enumerate(sizes):
        if current and current_bytes + size / 2 > target and len(groups) < tasks - 1 and n - i >= tasks - len(groups) - 1:
            groups.append(current)
            current, current_bytes = 0, 0
        current += 1
        current_bytes += size
    groups.append(current)
    return groups


def _chunks(items: Sequence, sizes: Sequence[int]) -> list[list]:
    out, start = [], 0
    for size in sizes:
        out.append(list(items[start:start + size]))
        start += size
    return out


class _Phases:
    """Runs a build's phases: all on Ray, or all in this process when the build has one tokenize task.

    One tokenize task gives Ray nothing to parallelise (and starting it costs ~15 s): the
    driver then is the build's only worker (sentencepiece's threads use the cores), holding
    what that one task holds. A build of several tasks runs every phase on Ray, so the
    driver holds no documents (its count and merge tasks included). With --ray-address
    everything goes to the cluster."""

    def __init__(self, staging: str, *, in_process: bool, workers: int | None, ray_address: str | None,
                 progress: bool):
        self.staging, self.workers, self.ray_address, self.progress = staging, workers, ray_address, progress
        self.in_process = in_process and not ray_address
        self.seconds: dict[str, float] = {}

    def run(self, phase: str, tasks: list[tuple[str, dict]], fn: Callable[[dict], dict], *,
            desc: str | None = None, count_key: str | None = "documents") -> list[dict]:
        """Every task's result, in task order; finished tasks (markers under `_staging/<phase>`) are skipped."""
        start = time.monotonic()
        folder = storage.join(self.staging, phase)
        try:
            if not tasks:
                return []
            if self.in_process:
                return [self._run_here(folder, name, payload, fn) for name, payload in tasks]
            by_name = parallel.run_tasks(folder, "", tasks, fn, desc=desc or f"shard: {phase.split('/')[-1]}",
                                         count_key=count_key, max_in_flight=self.workers, progress=self.progress,
                                         markers=folder, ray_address=self.ray_address)
            return [by_name[name] for name, _ in tasks]
        finally:
            key = phase.split("/")[-1].split("-")[0]
            self.seconds[key] = self.seconds.get(key, 0.0) + time.monotonic() - start

    @staticmethod
    def _run_here(folder: str, name: str, payload: dict, fn: Callable[[dict], dict]) -> dict:
        marker = storage.join(folder, jobdir.TASKS, f"{name}.json")
        try:
            done = storage.read_json(marker)
        except ValueError:
            done = None
        if isinstance(done, dict):
            return parallel.strip_marker(done)
        result = dict(fn(payload) or {})
        # The format run_tasks writes (no output files recorded), so either can resume the other.
        storage.write_json_atomic(marker, {**result, parallel.OUTPUTS_KEY: {}})
        return result


# ---------------------------------------------------------------- the build


def _fold(phases: _Phases, files: list[str], sizes: list[int], inputs: list, *, group_by: str,
          top_k: int | None, progress: bool) -> dom.DomainFolder | None:
    """The fold of the whole input, counted and reduced in tasks; None when domains are the raw keys."""
    if group_by == "edu" and top_k is None:
        return None  # edu_int_score buckets: a handful of keys, folded by nothing (checked after tokenizing)
    count_id = _digest({"inputs": inputs, "group_by": group_by, "partitions": counts.PARTITIONS})
    folder = f"counts-{count_id}"
    groups = _chunks(files, task_groups(sizes, COUNT_TASK_BYTES, 1))
    out_dir = storage.join(phases.staging, folder, "files")
    counted = phases.run(f"{folder}/count", [
        (f"{i:06d}", {"inputs": group, "group_by": group_by, "output": storage.join(out_dir, f"{i:06d}.parquet")})
        for i, group in enumerate(groups)], counts.count_task, desc="shard: count keys", count_key="rows")
    reducers = counts.reducer_count(sum(int(r["distinct"]) for r in counted))
    reduced = phases.run(f"{folder}/reduce-{top_k}-{reducers}", [
        (f"{r:04d}", {"dir": out_dir, "count_files": len(groups), "partitions": counts.reducer_partitions(r, reducers),
                      "top_k": top_k}) for r in range(reducers)],
        counts.reduce_task, desc="shard: reduce keys", count_key=None)
    fold = counts.fold_domains(reduced, group_by, top_k)
    if progress:
        kept = f"the {len(fold.names())} largest kept, the rest -> {dom.OTHER!r}" if top_k is not None else "no folding"
        print(f"shard: {sum(int(r['distinct']) for r in reduced)} distinct {group_by} values ({kept})")
    return fold


def build_store(job: str, store: str | None = None, *, group_by: str = "edu", tokenizer: str | None = None,
                train_tokenizer: int | None = None, tokenizer_type: str = "bpe", seq_len: int = fmt.DEFAULT_SEQ_LEN,
                top_k: int | None = None, input_stage: str | None = None, workers: int | None = None,
                ray_address: str | None = None, progress: bool = True,
                shard_tokens: int = DEFAULT_SHARD_TOKENS,
                tokenizer_sample_bytes: int = DEFAULT_SAMPLE_BYTES,
                keep_builds: int = fmt.DEFAULT_KEEP_BUILDS, input_files: list[str] | None = None,
                input_fingerprints: list[dict] | None = None, overwrite: bool = False,
                task_bytes: int = TASK_BYTES, min_tasks: int = MIN_TASKS, rehydrate: bool = False) -> dict[str, Any]:
    """Build (or rebuild) the shard store of `job` at `store` (default `<job>/store`); return the stats.

    `keep_builds`: how many published builds keep their files (this one included), so that
    readers pinned to an older build keep working through `keep_builds - 1` rebuilds.
    `overwrite`: build afresh even when the published build was made from the same inputs
    and settings. `input_files`/`input_fingerprints`: the inputs as the stage runner
    resolved them (default: the input stage's `_SUCCESS`). `rehydrate`: each document repeated by
    its `minhash_cluster_size` as FineWeb-2 does (the tokenize tasks repeat rows: nothing per
    document reaches the driver)."""
    t0 = time.monotonic()
    store = store or storage.join(job, jobdir.STORE)
    _check_options(job, store, seq_len=seq_len, top_k=top_k, shard_tokens=shard_tokens, keep_builds=keep_builds)
    check_store_folder(store)
    stage = jobdir.resolve_input_stage(job, input_stage)
    files, fingerprints = _inputs(job, stage, input_files, input_fingerprints)
    fs, first = storage.get_fs(files[0])
    with fs.open(first, "rb") as f:
        schema = pq.read_schema(f)
    if "text" not in schema.names:
        raise StoreError(f"{files[0]} has no `text` column")
    dom.check_group_by(group_by, schema.names)
    effective_top_k = top_k if top_k is not None else dom.default_top_k(group_by)
    # What identifies each input's content (size and checksum or ETag), as the runner records it.
    # Inputs inside the job by their job-relative path, so a moved or copied job's store stays up to date;
    # `absolute` is what an older Shammie recorded (a store built by it is still recognised as up to date).
    content = [{k: v for k, v in fp.items() if k != "rows"} for fp in fingerprints]
    inputs = [[storage.relative_to(url, job) or url, fp] for url, fp in zip(files, content)]
    absolute = [[url, fp] for url, fp in zip(files, content)]
    sizes = [int(fp.get("size") or 1) for fp in fingerprints]

    tok = _resolve_tokenizer(store, files, inputs, absolute, tokenizer=tokenizer, train_vocab=train_tokenizer,
                             tokenizer_type=tokenizer_type, sample_bytes=tokenizer_sample_bytes,
                             workers=workers, progress=progress)
    groups = task_groups(sizes, task_bytes, min_tasks)
    recipe = {"inputs": inputs, "tokenizer": tok.sha256, "group_by": group_by, "top_k": effective_top_k,
              "seq_len": seq_len, "shard_tokens": shard_tokens, "groups": groups,
              "keep_fraction": KEEP_FRACTION, "format": fmt.FORMAT_VERSION, "layout": "pieces",
              **({"rehydrate": "fineweb-2"} if rehydrate else {})}
    recipe_id = _digest(recipe)
    existing, _ = published_manifest(store)   # a damaged one is simply replaced
    same = bool(existing) and existing.get("recipe") in (recipe_id, _digest({**recipe, "inputs": absolute}))
    if same and not overwrite:
        # Same inputs, tokenizer and options as the published store: nothing to do, and
        # rewriting would touch files the current manifest points at.
        if progress:
            print(f"shard: {store} is up to date (build {existing['build_id']})")
        stats = {**(read_store_stats(store) or _stats(existing, store=store, stage=stage, seconds=0.0, phases={})),
                 "up_to_date": True}
        record_stats(job, store, stats, in_store=False)   # the store itself stays untouched
        return stats
    # A fresh build of unchanged settings (overwrite) gets an id of its own: the published
    # build keeps its files for pinned readers, and an interrupted overwrite resumes here.
    build_id = _digest([recipe_id, existing["build_id"]]) if same else recipe_id
    staging = storage.join(store, fmt.STAGING)
    file_groups = _chunks(files, groups)
    phases = _Phases(staging, in_process=len(file_groups) == 1, workers=workers, ray_address=ray_address,
                     progress=progress)
    write_tokenizer(store, tok)
    folder = _fold(phases, files, sizes, inputs, group_by=group_by, top_k=effective_top_k, progress=progress)
    plan = _tokenize(phases, file_groups, store=store, build_id=build_id, tok=tok, folder=folder,
                     group_by=group_by, schema=schema, shard_tokens=shard_tokens, threads=workers or os.cpu_count() or 1,
                     rehydrate=rehydrate)
    domains = _merge(phases, plan, store=store, build_id=build_id, tok=tok, schema=schema)
    manifest = new_manifest(tok, build_id=build_id, seq_len=seq_len, domains=domains, info={
        "group_by": group_by, "top_k": effective_top_k, "recipe": recipe_id,
        "input": {"job": job, "stage": stage, "files": len(files)}})
    stats = _stats(manifest, store=store, stage=stage, seconds=time.monotonic() - t0, phases=phases.seconds)
    stats["pieces"] = {"tasks": len(file_groups), "merged": sum(g["rows"][1] - g["rows"][0] for g in plan.groups),
                       "merge_tasks": len(plan.groups)}
    publish_build(store, manifest, tok, keep_builds=keep_builds, success={"stats": stats})
    storage.remove(staging)
    record_stats(job, store, stats)
    return stats


def _tokenize(phases: _Phases, file_groups: list[list[str]], *, store: str, build_id: str, tok: Tokenizer,
              folder: dom.DomainFolder | None, group_by: str, schema, shard_tokens: int,
              threads: int, rehydrate: bool = False) -> pieces.MergePlan:
    """Tokenize tasks write every domain's pieces into the store; returns the plan of what to merge."""
    fold_url = None
    if folder is not None:
        fold_url = storage.join(phases.staging, build_id, "fold.json")
        storage.write_bytes_atomic(fold_url, pieces.fold_file_payload(folder))
    common = {"store": store, "build_id": build_id, "group_by": group_by, "fold": fold_url,
              "tokenizer": storage.join(store, fmt.tokenizer_name(tok.sha256)), "tokenizer_sha256": tok.sha256,
              "schema": pieces.encode_schema(pieces.text_schema(schema)), "shard_tokens": shard_tokens,
              "keep_tokens": max(1, shard_tokens // KEEP_FRACTION), "rehydrate": rehydrate}
    tasks = [(f"{i:06d}", {**common, "task": i, "inputs": group,
                           "threads": threads if phases.in_process else 1})   # the driver as the only worker
             for i, group in enumerate(file_groups)]
    results = phases.run(f"{build_id}/tokenize", tasks, pieces.tokenize_task, desc="shard: tokenize")
    del tasks
    plan = pieces.plan_merges(results, shard_tokens, None if folder is None else pieces.fold_domain_list(folder))
    if folder is None and len(plan.names) > dom.MAX_DOMAINS_WITHOUT_TOP_K:
        dom.DomainFolder({}, group_by, None, distinct=len(plan.names))  # raises the refusal
    return plan


def _merge(phases: _Phases, plan: pieces.MergePlan, *, store: str, build_id: str, tok: Tokenizer,
           schema) -> dict[str, list[dict]]:
    """Merge tasks join each group of small pieces into one shard; returns every domain's shards in order."""
    text_schema = pieces.encode_schema(pieces.text_schema(schema))
    tasks = []
    for g in plan.groups:
        group_pieces = plan.pieces(g)
        first = (int(group_pieces[0][0]), int(group_pieces[0][1]))
        tasks.append((f"{g['domain']}--{first[0]:06d}-{first[1]:04d}",
                      {"store": store, "domain": g["domain"], "build_id": build_id, "pieces": group_pieces,
                       "first": first, "dtype": tok.dtype.str, "schema": text_schema}))
    results = phases.run(f"{build_id}/merge", tasks, pieces.merge_task, desc="shard: merge small pieces")
    merged = {(t[1]["domain"], *t[1]["first"]): r["entry"] for t, r in zip(tasks, results)}
    return plan.shards(merged)


def _inputs(job: str, stage: str, files: list[str] | None,
            fingerprints: list[dict] | None) -> tuple[list[str], list[dict]]:
    """The input files and what identifies each one's content, as recorded upstream when possible."""
    if files is None:
        recorded = parquet_outputs_of(job, stage)
        files, fingerprints = [i.url for i in recorded], [dict(i.fingerprint) for i in recorded]
    files = list(files)
    if not files:
        raise StoreError(f"{jobdir.stage_path(job, stage)} holds no Parquet files")
    if fingerprints is None or len(fingerprints) != len(files):
        fingerprints = [storage.file_fingerprint(url) or {} for url in files]
    return files, [dict(fp) for fp in fingerprints]


def _stats(manifest: dict[str, Any], *, store: str, stage: str, seconds: float,
           phases: dict[str, float]) -> dict[str, Any]:
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
        "tokenizer": {k: manifest["tokenizer"].get(k)
                      for k in ("path", "source", "vocab_size", "vocab_asked", "eod_id", "model_type")},
        "token_dtype": manifest["token_dtype"],
        "seq_len": manifest["seq_len"],
        "seconds": round(seconds, 3),
        "count_seconds": round(phases.get("count", 0.0) + phases.get("reduce", 0.0), 3),
        "tokenize_seconds": round(phases.get("tokenize", 0.0), 3),
        "write_seconds": round(phases.get("merge", 0.0), 3),
        "tokens_per_s": round(manifest["tokens"] / max(seconds, 1e-9), 1),
    }


# ---------------------------------------------------------------- where the stats go


def _same_place(a: str, b: str) -> bool:
    return storage.get_fs(a)[1].rstrip("/") == storage.get_fs(b)[1].rstrip("/")


def owns_job_stats(job: str, store: str) -> bool:
    """Whether `job`'s stats.json "shard" section describes `store`: the job's own store is
    JOB/store, or the store its section already names (a `shammie run` config's `shard.store`,
    or the first store built for the job). Other stores keep their stats in their `_SUCCESS`."""
    if _same_place(store, storage.join(job, jobdir.STORE)):
        return True
    section = jobdir.read_stats(job).get("shard")
    return not isinstance(section, dict) or not section.get("store") or _same_place(str(section["store"]), store)


def record_stats(job: str, store: str, stats: dict[str, Any], *, in_store: bool = True) -> None:
    """The store keeps its stats in `STORE/_SUCCESS`; the job's stats.json only those of its own store."""
    url = storage.join(store, fmt.SUCCESS)
    try:
        success = storage.read_json(url)
    except ValueError:
        success = None
    if in_store and isinstance(success, dict) and success.get("stats") != stats:
        storage.write_json_atomic(url, {**success, "stats": stats})
    if owns_job_stats(job, store):
        jobdir.update_stats(job, "shard", stats)


def read_store_stats(store: str) -> dict[str, Any] | None:
    """The stats the store recorded for its current build (None when it has none)."""
    try:
        success = storage.read_json(storage.join(store, fmt.SUCCESS))
    except ValueError:
        return None
    stats = success.get("stats") if isinstance(success, dict) else None
    return stats if isinstance(stats, dict) else None
