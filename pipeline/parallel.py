"""Run one Ray task per unit of work (usually one input file), resumably.

Why hand-written: Ray schedules and retries tasks, but the skip-what-is-done
bookkeeping, bounded submission and the live progress bar are ours. Each task
writes its output atomically, then its marker `<stage>/_tasks/<name>.json` (the
task's stats) from inside the worker, so work finished while the driver died is
kept. A re-run skips tasks that have a marker whose outputs still match it; Ray
re-runs a task whose worker died (`max_retries`), and the atomic writes make a
retried task's output whole. The driver's bookkeeping is in bulk (`finished_tasks`):
listings instead of a request per marker or output, and no output is read back.

Tasks report live progress with `report_progress(n)`: counts go to a small Ray
actor at most twice a second, and the driver's bar shows them (docs and docs/s).
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Callable, Sequence

from tqdm import tqdm

from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import ShammieError, as_output_error

_FLUSH_EVERY_S = 0.5
_progress_handle = None
_progress_pending = 0
_progress_last = 0.0


def report_progress(n: int = 1) -> None:
    """Count `n` units (documents) done by the current task; cheap to call per document."""
    global _progress_pending, _progress_last
    if _progress_handle is None:
        return
    _progress_pending += n
    now = time.monotonic()
    if now - _progress_last >= _FLUSH_EVERY_S:
        _flush_progress(now)


def _flush_progress(now: float | None = None) -> None:
    global _progress_pending, _progress_last
    if _progress_handle is not None and _progress_pending:
        _progress_handle.add.remote(_progress_pending)
        _progress_pending = 0
    _progress_last = now if now is not None else time.monotonic()


class _ProgressCounter:
    def __init__(self):
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n

    def get(self) -> int:
        return self.done


# Settings given to the driver must hold in the workers too: workers of an
# already-running Ray do not see variables set after it started (a custom S3 endpoint).
# Only non-secret settings travel: Ray keeps a task's runtime_env with its metadata
# (state API, dashboard, logs), so credentials never go there. Workers take
# credentials from their own environment or the AWS credential chain (instance
# role, ~/.aws); an in-process local Ray's workers inherit the driver's environment.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(w in upper for w in SECRET_WORDS)


def forwarded_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SHAMMIE_") and not is_secret_name(k)})
    # A runtime_env makes Ray start a separate worker pool: only when there is something to say.
    if not any(k.startswith(("AWS_ENDPOINT_URL", "SHAMMIE_")) for k in env):
        return {}
    return env


OUTPUTS_KEY = "_outputs"
# What identifies an output's content: the `_SUCCESS` manifest that downstream stages fingerprint
# their input by. A marker also records, for a local file, its `mtime_ns` (when it was written).
CONTENT_KEYS = ("size", "xxh3", "etag", "rows")
STAMP_KEY = "mtime_ns"


def output_fingerprint(url: str) -> dict[str, Any] | None:
    """What the worker records about an output it just wrote (None if it is missing): size and
    xxh3 checksum (local; the file is still in the page cache) or ETag (object store), the row
    count of a Parquet file (from its footer), and the modification time of a local file.

    Taken once, where the file was written, so the driver never reads outputs back: it checks
    them on resume against one listing of their folder (size and mtime_ns, or size and ETag)."""
    record = storage.file_fingerprint(url)
    if record is None:
        return None
    if not storage.is_remote(url):
        record[STAMP_KEY] = os.stat(storage.strip_file_scheme(url)).st_mtime_ns
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        fs, path = storage.get_fs(url)
        with fs.open(path, "rb") as f:
            record["rows"] = pq.read_metadata(f).num_rows
    return record


def content_of(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in CONTENT_KEYS if k in record}


def _run_and_mark(fn: Callable[[Any], dict], payload: Any, marker_url: str, outputs: Sequence[str],
                  progress=None) -> dict:
    """Worker side: run the task, then record its stats and the fingerprint of each output it wrote.

    The marker is written after the outputs, so a marker whose outputs still match
    them proves the task finished; a damaged or missing output makes it stale. The
    fingerprints also travel back with the result (under OUTPUTS_KEY), so the driver
    builds the folder's output manifest without reading any output."""
    global _progress_handle, _progress_pending
    _progress_handle, _progress_pending = progress, 0
    try:
        result = dict(fn(payload) or {})
    finally:
        _flush_progress()
        _progress_handle = None
    fingerprints = {}
    for url in outputs:
        fp = output_fingerprint(url)
        if fp is None:
            raise RuntimeError(f"task finished without writing its output {url}")
        fingerprints[url.rsplit("/", 1)[-1]] = fp
    marked = {**result, OUTPUTS_KEY: fingerprints}
    storage.write_json_atomic(marker_url, marked)
    return marked


def output_matches(recorded: dict[str, Any], listed: dict[str, Any] | None, url: str, verify: bool = False) -> bool:
    """Is the file at `url` (as one listing saw it: `listed`) still the one `recorded` describes?

    Object store: same size and ETag. Local: same size and modification time (ns), or, with
    `verify` or a record without a time (an older Shammie), same size and xxh3 of its bytes."""
    if listed is None or recorded.get("size") != listed.get("size"):
        return False
    if storage.is_remote(url):
        return "etag" not in recorded or listed.get("etag") == recorded["etag"]
    if verify or STAMP_KEY not in recorded:
        return (storage.file_fingerprint(url) or {}).get("xxh3") == recorded.get("xxh3")
    return listed.get(STAMP_KEY) == recorded[STAMP_KEY]


def marker_proves(marker: Any, outputs: Sequence[str], listed: dict[str, dict | None], verify: bool = False) -> bool:
    """A marker counts only while every output it recorded is still there, unchanged (`listed`: url -> stat)."""
    if not isinstance(marker, dict):
        return False
    recorded = marker.get(OUTPUTS_KEY)
    if recorded is None:
        return not outputs  # a marker from before output fingerprints proves nothing about its files
    for url in outputs:
        want = recorded.get(url.rsplit("/", 1)[-1])
        if not isinstance(want, dict) or not output_matches(want, listed.get(url), url, verify):
            return False
    return True


def strip_marker(marker: dict) -> dict:
    return {k: v for k, v in marker.items() if k != OUTPUTS_KEY}


def finished_tasks(specs: Sequence[tuple[str, Any, tuple, str]], marker_dir: str, *,
                   verify: bool = False) -> tuple[dict[str, dict], list[str]]:
    """(valid markers by task name, URLs of stale markers) for `specs` = (name, payload, outputs, marker URL).

    In bulk, so a phase of 90k tasks starts in seconds: one listing of the marker folder
    (a task without a marker costs nothing), the markers that exist read together, and
    their outputs checked against one listing per output folder, never one request per file."""
    present = set(storage.listdir(marker_dir))
    candidates = [s for s in specs if storage.basename(s[3]) in present]
    if not candidates:
        return {}, []
    markers = storage.read_json_files([s[3] for s in candidates])
    listed = storage.stat_files([url for s in candidates if isinstance(markers[s[3]], dict) for url in s[2]])
    valid, stale = {}, []
    for name, _payload, outputs, marker_url in candidates:
        marker = markers[marker_url]
        if marker_proves(marker, outputs, listed, verify):
            valid[name] = marker
        else:
            stale.append(marker_url)
    return valid, stale


def _record_outputs(records: dict[str, dict] | None, marker: dict, outputs: Sequence[str]) -> None:
    if records is None:
        return
    recorded = marker.get(OUTPUTS_KEY) or {}
    for url in outputs:
        fp = recorded.get(url.rsplit("/", 1)[-1])
        if isinstance(fp, dict):
            records[url] = fp


def _task_error(err: Exception) -> Exception:
    """The exception a task raised, unwrapped from Ray's RayTaskError when it is one of ours."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, ShammieError):
        return cause
    return as_output_error(cause) or err


def run_tasks(
    job: str,
    stage: str,
    tasks: Sequence[tuple],
    fn: Callable[[Any], dict],
    *,
    desc: str = "tasks",
    unit: str = "docs",
    count_key: str | None = "documents",
    max_in_flight: int | None = None,
    num_cpus: float = 1,
    max_retries: int = 3,
    progress: bool = True,
    markers: str | None = None,
    ray_address: str | None = None,
    verify: bool = False,
    records: dict[str, dict] | None = None,
    shared_filesystem: bool | None = None,
) -> dict[str, dict]:
    """Run `fn(payload)` for each `(name, payload[, output_urls])` not already done; return all results by name.

    A task is done when its marker (`<markers or job/stage>/_tasks/<name>.json`) exists
    and every output URL it lists still matches the fingerprint recorded there
    (`output_matches`; `verify` re-reads local outputs for their checksum); a stale
    marker is removed and its task redone. `records`, when given, receives the
    fingerprint of every task's outputs (url -> size, checksum or ETag, rows, mtime_ns),
    as the workers recorded them. With `shared_filesystem` given (True or False), a local
    marker folder is refused on a cluster of several hosts unless it is True
    (`ray_runtime.check_job_location`), before the first task. `fn` must be importable by Ray
    workers (a module-level function or a picklable callable) and must write its
    outputs atomically before returning a JSON-able stats dict. Live progress comes
    from `report_progress`; tasks that never call it are counted when they finish,
    by their result's `count_key`.
    """
    import ray

    marker_dir = storage.join(markers or jobdir.stage_path(job, stage), jobdir.TASKS)
    results: dict[str, dict] = {}
    specs = [(task[0], task[1], tuple(task[2]) if len(task) > 2 else (), storage.join(marker_dir, f"{task[0]}.json"))
             for task in tasks]
    done, stale = finished_tasks(specs, marker_dir, verify=verify)
    if stale:
        storage.remove_files(stale)
    todo = []
    for spec in specs:
        marker = done.get(spec[0])
        if marker is None:
            todo.append(spec)
            continue
        results[spec[0]] = strip_marker(marker)
        _record_outputs(records, marker, spec[2])
    if not todo:
        return results

    from shammie.pipeline.ray_runtime import check_job_location, init_ray

    # Ray starts only when there is work (it costs seconds; a resumed stage may need none).
    init_ray(ray_address, num_cpus=max_in_flight)
    if shared_filesystem is not None:  # the workers write beside the markers: a folder every node must see
        check_job_location(marker_dir, ray_address, shared_filesystem=shared_filesystem)
    options = dict(num_cpus=num_cpus, max_retries=max_retries)
    env = forwarded_env()
    if env:
        options["runtime_env"] = {"env_vars": env}
    remote = ray.remote(**options)(_run_and_mark)
    counter = ray.remote(num_cpus=0)(_ProgressCounter).remote() if progress else None
    if max_in_flight is None:
        max_in_flight = max(1, int(ray.cluster_resources().get("CPU", 1)))

    import sys

    # a task is a file for most phases, a band or an edge partition for others: the bar counts tasks
    bar = tqdm(total=len(tasks), initial=len(results), desc=desc, unit="task", disable=not progress,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    start = time.monotonic()
    finished_count = 0
    pending: dict[Any, tuple[str, tuple]] = {}
    queue = collections.deque(todo)
    try:
        while queue or pending:
            while queue and len(pending) < max_in_flight:
                name, payload, outputs, marker_url = queue.popleft()
                pending[remote.remote(fn, payload, marker_url, outputs, counter)] = (name, outputs)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_FLUSH_EVERY_S)
            for ref in ready:
                name, outputs = pending.pop(ref)
                try:
                    marked = ray.get(ref)
                except Exception as e:
                    raise _task_error(e) from None
                results[name] = strip_marker(marked)
                _record_outputs(records, marked, outputs)
                if count_key:
                    finished_count += int(results[name].get(count_key, 0) or 0)
                bar.update(1)
            if counter is not None:
                done = ray.get(counter.get.remote()) or finished_count
                elapsed = max(time.monotonic() - start, 1e-9)
                if done or count_key:   # a phase that counts nothing shows no "0 docs"
                    bar.set_postfix_str(f"{done} {unit}, {done / elapsed:.1f} {unit}/s", refresh=False)
                bar.update(0)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
        if counter is not None:
            ray.kill(counter)
    return results
