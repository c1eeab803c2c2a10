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
from typing import Any, Iterator, Sequence

import pyarrow.parquet as pq

from shammie.mixing import domains as dom
from shammie.mixing import store_counts as counts
from shammie.mixing import store_format as fmt
from shammie.mixing import store_pieces as pieces
from shammie.mixing.store_format import StoreError
from shammie.mixing.store_writer import DEFAULT_SHARD_TOKENS, new_manifest, publish_build, write_tokenizer
from shammie.mixing.tokenizer import (DEFAULT_SAMPLE_BYTES, CountedTexts, Tokenizer, sample_texts,
                                      train_tokenizer)
from shammie.pipeline import jobdir, storage
from shammie.pipeline.stage import Phase, Task, parquet_outputs_of

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
    # How many bytes of the input the training read, kept beside the cached model for a resumed build
    cached_info = storage.join(store, fmt.STAGING, f"tokenizer-train-{recipe_id}.json")
    read: int | None = None
    source: str | None = None
    if existing and existing["tokenizer"].get("train_recipe") in (recipe_id, legacy_id):
        # Already trained by the build that is published: reuse it, so re-runs stay up to date.
        tok = Tokenizer.load(storage.join(store, existing["tokenizer"]["path"]))
        source = existing["tokenizer"].get("source")
    elif storage.exists(cached):
        tok = Tokenizer(storage.read_bytes(cached))
        read = (storage.read_json(cached_info, default={}) or {}).get("sample_bytes")
    else:
        if progress:
            print(f"shard: training a {tokenizer_type} tokenizer ({train_vocab} pieces) "
                  f"on up to {sample_bytes / 1e6:.0f} MB of the input")
        texts = CountedTexts(sample_texts(files, sample_bytes))
        tok = train_tokenizer(texts, train_vocab, tokenizer_type, num_threads=workers or os.cpu_count() or 1)
        read = texts.bytes
        storage.write_json_atomic(cached_info, {"sample_bytes": read})   # before the model that it describes
        storage.write_bytes_atomic(cached, tok.model_proto)
    if not source:
        # the bytes actually read, not the cap (a small job holds far less than --tokenizer-sample-mb)
        used = f"{read} bytes of the input" if read is not None else "a sample of the input"
        source = f"trained {tokenizer_type} {train_vocab} on {used} (sample cap {sample_bytes} bytes)"
    tok.source = source
    tok.train_recipe = recipe_id
    tok.vocab_asked = train_vocab
    if tok.vocab_size < train_vocab:
        # sentencepiece takes what a small sample supports (hard_vocab_limit=False) instead of failing:
        # say so, since every token id and the store's compression depend on it
        print(f"warning: shard: the trained tokenizer has {tok.vocab_size} pieces, not the {train_vocab} asked: "
              f"its training sample ({tok.source.split(' on ', 1)[-1]}) holds too little distinct "
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


class StoreBuild:
    """One build of a store, declared as phases the stage runner runs (`ShardStage.phases`,
    `mixing/shard_stage.py`): count and reduce (the fold), tokenize, merge, publish.

    Created by the driver when the stage starts work: it checks the options, reads the input's schema,
    picks the tokenizer (training one on a sample when asked) and names the build. When the published
    build was made from the same inputs and settings (and no `overwrite`), `up_to_date` holds its stats
    and only the publish phase runs, which changes nothing. A build of one tokenize task runs its phases
    in the driver (`on_driver`): one task gives Ray nothing to parallelise and starting it costs ~15 s;
    a build of several runs every phase on Ray, so the driver holds no documents. Task markers live
    under `STORE/_staging/` (the runner's bookkeeping folder of a store is the store itself)."""

    def __init__(self, job: str, store: str, *, group_by: str, tokenizer: str | None, train_tokenizer: int | None,
                 tokenizer_type: str, seq_len: int, top_k: int | None, input_stage: str, files: list[str],
                 fingerprints: list[dict], workers: int | None, ray_address: str | None, progress: bool,
                 shard_tokens: int, tokenizer_sample_bytes: int, keep_builds: int, overwrite: bool,
                 task_bytes: int = TASK_BYTES, min_tasks: int = MIN_TASKS, rehydrate: bool = False):
        self.started = time.monotonic()
        _check_options(job, store, seq_len=seq_len, top_k=top_k, shard_tokens=shard_tokens, keep_builds=keep_builds)
        check_store_folder(store)
        files, fingerprints = _inputs(job, input_stage, files, fingerprints)
        fs, first = storage.get_fs(files[0])
        with fs.open(first, "rb") as f:
            schema = pq.read_schema(f)
        if "text" not in schema.names:
            raise StoreError(f"{files[0]} has no `text` column")
        dom.check_group_by(group_by, schema.names)
        self.job, self.store, self.group_by, self.seq_len, self.input_stage = job, store, group_by, seq_len, input_stage
        self.files, self.schema, self.shard_tokens, self.keep_builds = files, schema, shard_tokens, keep_builds
        self.progress, self.rehydrate = progress, rehydrate
        self.top_k = top_k if top_k is not None else dom.default_top_k(group_by)
        # What identifies each input's content (size and checksum or ETag), as the runner records it.
        # Inputs inside the job by their job-relative path, so a moved or copied job's store stays up to date;
        # `absolute` is what an older Shammie recorded (a store built by it is still recognised as up to date).
        content = [{k: v for k, v in fp.items() if k != "rows"} for fp in fingerprints]
        self.inputs = [[storage.relative_to(url, job) or url, fp] for url, fp in zip(files, content)]
        absolute = [[url, fp] for url, fp in zip(files, content)]
        self.sizes = [int(fp.get("size") or 1) for fp in fingerprints]
        self.tok = _resolve_tokenizer(store, files, self.inputs, absolute, tokenizer=tokenizer,
                                      train_vocab=train_tokenizer, tokenizer_type=tokenizer_type,
                                      sample_bytes=tokenizer_sample_bytes, workers=workers, progress=progress)
        groups = task_groups(self.sizes, task_bytes, min_tasks)
        recipe = {"inputs": self.inputs, "tokenizer": self.tok.sha256, "group_by": group_by, "top_k": self.top_k,
                  "seq_len": seq_len, "shard_tokens": shard_tokens, "groups": groups,
                  "keep_fraction": KEEP_FRACTION, "format": fmt.FORMAT_VERSION, "layout": "pieces",
                  **({"rehydrate": "fineweb-2"} if rehydrate else {})}
        self.recipe_id = _digest(recipe)
        existing, _ = published_manifest(store)   # a damaged one is simply replaced
        same = bool(existing) and existing.get("recipe") in (self.recipe_id, _digest({**recipe, "inputs": absolute}))
        self.up_to_date: dict[str, Any] | None = None
        if same and not overwrite:
            # Same inputs, tokenizer and options as the published store: nothing to do, and
            # rewriting would touch files the current manifest points at.
            if progress:
                print(f"shard: {store} is up to date (build {existing['build_id']})")
            recorded = jobdir.recorded_path(job, store)   # where it is now, for a moved job too
            self.up_to_date = {**(read_store_stats(store) or _stats(existing, store=recorded, stage=input_stage,
                                                                     seconds=0.0, phases={})),
                               "store": recorded, "up_to_date": True}
        # A fresh build of unchanged settings (overwrite) gets an id of its own: the published
        # build keeps its files for pinned readers, and an interrupted overwrite resumes here.
        self.build_id = _digest([self.recipe_id, existing["build_id"]]) if same else self.recipe_id
        self.staging = storage.join(store, fmt.STAGING)
        self.file_groups = _chunks(files, groups)
        self.on_driver = len(self.file_groups) == 1 and not ray_address
        self.threads = workers or os.cpu_count() or 1

    def phases(self, ctx) -> Iterator[Phase]:
        if self.up_to_date is None:
            write_tokenizer(self.store, self.tok)
            yield from self._fold_phases(ctx)
            yield self._tokenize_phase(ctx)
            yield self._merge_phase(ctx)
        yield Phase("publish", plan=lambda done: [], on_driver=True, summary=lambda results: self._publish(ctx))

    def _fold_phases(self, ctx) -> Iterator[Phase]:
        """The fold of the whole input, counted and reduced in tasks (none when domains are the raw keys:
        edu_int_score buckets, a handful of keys, checked after tokenizing). Its summary: the fold."""
        if self.group_by == "edu" and self.top_k is None:
            return
        count_id = _digest({"inputs": self.inputs, "group_by": self.group_by, "partitions": counts.PARTITIONS})
        folder = f"{fmt.STAGING}/counts-{count_id}"
        groups = _chunks(self.files, task_groups(self.sizes, COUNT_TASK_BYTES, 1))
        out_dir = storage.join(self.store, folder, "files")
        yield Phase("count", plan=lambda done: [
            Task(f"{i:06d}", {"inputs": group, "group_by": self.group_by,
                              "output": storage.join(out_dir, f"{i:06d}.parquet")})
            for i, group in enumerate(groups)], task=counts.count_task, markers=f"{folder}/count",
            desc="shard: count keys", count_key="rows", on_driver=self.on_driver)
        reducers = counts.reducer_count(sum(int(r["distinct"]) for r in ctx.done["count"].values()))
        yield Phase("reduce", plan=lambda done: [
            Task(f"{r:04d}", {"dir": out_dir, "count_files": len(groups),
                              "partitions": counts.reducer_partitions(r, reducers), "top_k": self.top_k})
            for r in range(reducers)], task=counts.reduce_task, markers=f"{folder}/reduce-{self.top_k}-{reducers}",
            desc="shard: reduce keys", count_key=None, on_driver=self.on_driver, summary=self._fold)

    def _fold(self, results: dict[str, dict]) -> dom.DomainFolder:
        reduced = [results[name] for name in sorted(results)]
        fold = counts.fold_domains(reduced, self.group_by, self.top_k)
        if self.progress:
            kept = (f"the {len(fold.names())} largest kept, the rest -> {dom.OTHER!r}" if self.top_k is not None
                    else "no folding")
            print(f"shard: {sum(int(r['distinct']) for r in reduced)} distinct {self.group_by} values ({kept})")
        return fold

    def _tokenize_phase(self, ctx) -> Phase:
        """Tokenize tasks write every domain's pieces into the store; the summary is the plan of what to merge."""
        folder = ctx.done.get("reduce")
        fold_url = None
        if folder is not None:
            fold_url = storage.join(self.staging, self.build_id, "fold.json")
            storage.write_bytes_atomic(fold_url, pieces.fold_file_payload(folder))
        common = {"store": self.store, "build_id": self.build_id, "group_by": self.group_by, "fold": fold_url,
                  "tokenizer": storage.join(self.store, fmt.tokenizer_name(self.tok.sha256)),
                  "tokenizer_sha256": self.tok.sha256,
                  "schema": pieces.encode_schema(pieces.text_schema(self.schema)), "shard_tokens": self.shard_tokens,
                  "keep_tokens": max(1, self.shard_tokens // KEEP_FRACTION), "rehydrate": self.rehydrate,
                  "threads": self.threads if self.on_driver else 1}   # the driver as the only worker

        def plan_merges(results: dict[str, dict]) -> pieces.MergePlan:
            plan = pieces.plan_merges([results[name] for name in sorted(results)], self.shard_tokens,
                                      None if folder is None else pieces.fold_domain_list(folder))
            if folder is None and len(plan.names) > dom.MAX_DOMAINS_WITHOUT_TOP_K:
                dom.DomainFolder({}, self.group_by, None, distinct=len(plan.names))  # raises the refusal
            return plan

        return Phase("tokenize", plan=lambda done: [
            Task(f"{i:06d}", {**common, "task": i, "inputs": group}) for i, group in enumerate(self.file_groups)],
            task=pieces.tokenize_task, markers=f"{fmt.STAGING}/{self.build_id}/tokenize", desc="shard: tokenize",
            on_driver=self.on_driver, summary=plan_merges)

    def _merge_phase(self, ctx) -> Phase:
        """Merge tasks join each group of small pieces into one shard; the summary is every domain's shards
        in order."""
        plan: pieces.MergePlan = ctx.done["tokenize"]
        text_schema = pieces.encode_schema(pieces.text_schema(self.schema))
        tasks = []
        for g in plan.groups:
            group_pieces = plan.pieces(g)
            first = (int(group_pieces[0][0]), int(group_pieces[0][1]))
            tasks.append(Task(f"{g['domain']}--{first[0]:06d}-{first[1]:04d}",
                              {"store": self.store, "domain": g["domain"], "build_id": self.build_id,
                               "pieces": group_pieces, "first": first, "dtype": self.tok.dtype.str,
                               "schema": text_schema}))

        def shards(results: dict[str, dict]) -> dict[str, list[dict]]:
            return plan.shards({(t.payload["domain"], *t.payload["first"]): results[t.name]["entry"] for t in tasks})

        return Phase("merge", plan=lambda done: tasks, task=pieces.merge_task,
                     markers=f"{fmt.STAGING}/{self.build_id}/merge", desc="shard: merge small pieces",
                     on_driver=self.on_driver, summary=shards)

    def _publish(self, ctx) -> dict[str, Any]:
        """The manifest (O(shards)), then the build record, `_SUCCESS` with this build's stats, older builds'
        files deleted (`publish_build`), then `_staging/`. Returns the stats."""
        if self.up_to_date is not None:
            return self.up_to_date
        plan: pieces.MergePlan = ctx.done["tokenize"]
        manifest = new_manifest(self.tok, build_id=self.build_id, seq_len=self.seq_len, domains=ctx.done["merge"],
                                info={"group_by": self.group_by, "top_k": self.top_k, "recipe": self.recipe_id,
                                      "input": {"job": self.job, "stage": self.input_stage, "files": len(self.files)}})
        stats = _stats(manifest, store=jobdir.recorded_path(self.job, self.store), stage=self.input_stage,
                       seconds=time.monotonic() - self.started,
                       phases={name: t["seconds"] for name, t in ctx.timings.items()})
        stats["pieces"] = {"tasks": len(self.file_groups),
                           "merged": sum(g["rows"][1] - g["rows"][0] for g in plan.groups),
                           "merge_tasks": len(plan.groups)}
        publish_build(self.store, manifest, self.tok, keep_builds=self.keep_builds, success={"stats": stats})
        storage.remove(self.staging)
        return stats


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
    """`store` as stats.json records it (`jobdir.recorded_path`: relative to the job when inside it)."""
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
    return (not isinstance(section, dict) or not section.get("store")
            or _same_place(jobdir.recorded_place(job, str(section["store"])), store))


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
