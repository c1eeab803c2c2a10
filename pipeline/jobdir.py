"""The contract between stages: one job = one directory (local or s3://).

    documents/  (crawl)  -> [exact-deduped/] -> deduped/ -> [decontaminated/] -> [classified/] -> scored/
                         -> subsets (edu-3/, ...) -> store/

(the order of `shammie run`'s steps: a quality classifier's column is then scored for edu too).

Each stage reads one folder and writes its own. A stage's folder holds its data files
and nothing else, so `datasets.load_dataset("parquet", data_dir=...)`, polars, pandas and
duckdb read it as it is; the runner's bookkeeping of that folder lives beside it, in
`JOB/_meta/<stage>/`: `_SUCCESS` (written last, atomically: the folder is complete),
`_stage.json`, the task markers in `_tasks/`, work files, and what a stage keeps besides
its documents (the dedup index, the decontamination removal list). `stats.json` at the
job root has one section per stage.
A stage's default input is the most downstream *complete* folder present;
`--input-stage` overrides. Columns are only ever added downstream.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

from shammie.pipeline import registry, storage
from shammie.pipeline.errors import InputError

DOCUMENTS = "documents"
EXACT_DEDUPED = "exact-deduped"
DEDUPED = "deduped"
DECONTAMINATED = "decontaminated"
CLASSIFIED = "classified"
SCORED = "scored"
STORE = "store"
# Stage folders that hold document Parquet files, upstream first: the folders the stages of the
# registry (`pipeline/registry.py`) declare, in its order (this is the registry's own list, so a
# stage registered later is in it). Subset folders (e.g. "edu-3") are downstream of "scored" and
# found by prefix.
DOCUMENT_STAGES = registry.DOCUMENT_FOLDERS
SUBSET_PREFIXES = registry.SUBSET_PREFIXES
SUCCESS = "_SUCCESS"
# The runner's record of what made a folder (settings, input fingerprints), beside its _SUCCESS
STAGE_RECORD = "_stage.json"
TASKS = "_tasks"
STATS = "stats.json"
# The folder of each stage folder's bookkeeping: JOB/_meta/<stage>/ (outside the data folder, which
# loaders read whole: polars and `datasets` fail on any file that is not Parquet, duckdb's
# `**/*.parquet` would take a removal list kept inside).
META = "_meta"
# What an older Shammie kept inside the stage folder; moved to JOB/_meta/<stage>/ on the next run.
LEGACY_BOOKKEEPING = ("_SUCCESS", "_stage.json", "_tasks", "_work", "_index", "_removed")


def stage_path(job: str, stage: str) -> str:
    return storage.join(job, stage)


def meta_path(job: str, stage: str) -> str:
    """The bookkeeping folder of the stage folder `stage`: JOB/_meta/<stage>/."""
    return storage.join(job, META, stage)


def success_path(job: str, stage: str) -> str:
    return storage.join(meta_path(job, stage), SUCCESS)


def legacy_success_path(job: str, stage: str) -> str:
    """Where an older Shammie wrote `_SUCCESS`: inside the folder (read until the folder's own stage moves it)."""
    return storage.join(job, stage, SUCCESS)


def completion_marker_path(job: str, stage: str) -> str:
    """The `_SUCCESS` that proves `stage` complete: JOB/_meta/<stage>/, or an older layout's inside the folder."""
    path = success_path(job, stage)
    if storage.exists(path) or not storage.exists(legacy_success_path(job, stage)):
        return path
    return legacy_success_path(job, stage)


def is_complete(job: str, stage: str) -> bool:
    return storage.exists(completion_marker_path(job, stage))


def mark_complete(job: str, stage: str, info: dict[str, Any] | None = None) -> None:
    payload = {"stage": stage, "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    payload.update(info or {})
    storage.write_json_atomic(success_path(job, stage), payload)


def clear_complete(job: str, stage: str) -> None:
    storage.remove(success_path(job, stage))


def task_marker_path(job: str, stage: str, task: str) -> str:
    return storage.join(meta_path(job, stage), TASKS, f"{task}.json")


def move_legacy_bookkeeping(job: str, stage: str) -> list[str]:
    """Move what an older Shammie kept inside the stage folder (`_SUCCESS`, `_stage.json`, `_tasks/`,
    ...) to JOB/_meta/<stage>/, so a job started before the move resumes; returns the names moved.
    Nothing is moved when the new folder already has a record (its own is the one that counts)."""
    folder = stage_path(job, stage)
    present = [n for n in storage.listdir(folder) if n in LEGACY_BOOKKEEPING] if storage.exists(folder) else []
    meta = meta_path(job, stage)
    if not present or storage.exists(storage.join(meta, "_stage.json")) or storage.exists(storage.join(meta, SUCCESS)):
        return []
    storage.makedirs(meta)
    renamed = {"_index": "index", "_removed": "removed"}
    for name in present:
        storage.rename(storage.join(folder, name), storage.join(meta, renamed.get(name, name)))
    return present


def read_stage_record(books: str) -> dict | None:
    """The `_stage.json` in the bookkeeping folder `books`; None when missing or unreadable."""
    try:
        record = storage.read_json(storage.join(books, STAGE_RECORD))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_task_marker(job: str, stage: str, task: str) -> dict | None:
    return storage.read_json(task_marker_path(job, stage, task))


def write_task_marker(job: str, stage: str, task: str, info: dict[str, Any]) -> None:
    storage.write_json_atomic(task_marker_path(job, stage, task), info)


def subset_stages(job: str) -> list[str]:
    return sorted(n for n in storage.listdir(job) if n.startswith(SUBSET_PREFIXES))


def ordered_document_stages(job: str) -> list[str]:
    """Document folders present in the job, upstream first."""
    present = set(storage.listdir(job))
    return [s for s in DOCUMENT_STAGES if s in present] + subset_stages(job)


def resolve_input_stage(job: str, requested: str | None = None, before: str | None = None) -> str:
    """The folder a stage reads: `requested`, else the most downstream complete one.

    `before` excludes the stage's own output folder and everything after it in
    the canonical order (dedup must not read `scored/` because it was re-run)."""
    if requested:
        if not storage.exists(stage_path(job, requested)):
            raise InputError(f"--input-stage {requested!r}: {stage_path(job, requested)} does not exist")
        if not is_complete(job, requested):
            raise InputError(f"--input-stage {requested!r} is not complete (no {SUCCESS}); re-run the stage that writes it")
        return requested
    candidates = [s for s in ordered_document_stages(job) if is_complete(job, s)]
    if before is not None:
        order = DOCUMENT_STAGES + subset_stages(job)
        if before in order:
            limit = order.index(before)
            candidates = [s for s in candidates if s in order and order.index(s) < limit]
    if not candidates:
        raise InputError(
            f"{job} has no complete document folder to read (looked for {', '.join(DOCUMENT_STAGES)}); "
            "run `shammie crawl` first"
        )
    return candidates[-1]


def stage_files(job: str, stage: str, suffix: str = ".parquet") -> list[str]:
    """Data files of a stage folder, sorted by name (stable task order)."""
    return [storage.join(job, stage, n) for n in storage.listdir(stage_path(job, stage))
            if n.endswith(suffix) and not n.startswith((".", "_"))]


def read_stats(job: str) -> dict[str, Any]:
    return storage.read_json(storage.join(job, STATS), default={}) or {}


def update_stats(job: str, section: str, data: dict[str, Any]) -> None:
    """Replace one stage's section of stats.json (the driver is the only writer)."""
    stats = read_stats(job)
    stats[section] = data
    storage.write_json_atomic(storage.join(job, STATS), stats)


def recorded_path(job: str, url: str) -> str:
    """How stats.json records a place: relative to the job when inside it ("store"), so a job that is
    moved or copied still names its own folders; a place outside the job as it is."""
    return storage.relative_to(url, job) or url


def recorded_place(job: str, recorded: str) -> str:
    """The place a `recorded_path` names, in the job where it is now (older records are absolute)."""
    if storage.is_remote(recorded) or os.path.isabs(storage.strip_file_scheme(recorded)):
        return recorded
    return storage.join(job, recorded)


def ensure_job_dir(job: str) -> None:
    if not storage.is_remote(job):
        if os.path.exists(job) and not os.path.isdir(job):
            raise InputError(f"{job} exists and is not a directory")
        os.makedirs(job, exist_ok=True)
