"""`run_stage`: the one runner every stage goes through, with one set of rules.

What a run does, whatever the stage (docs/job-directory.md has the user's version):

1. **Before any work** the job directory and output are checked (writable, `stats.json`
   a JSON object), the inputs are resolved (paths, globs, upstream `_SUCCESS`) and an
   empty input is refused: it never becomes an empty "complete" output.
2. **One run per stage per job**: a lock (`JOB/_locks/<folder>.lock`) is taken; a second
   run fails at once naming the holder, or waits with `--wait`.
3. **The output records what made it**: `_stage.json` (in the folder's bookkeeping folder,
   `JOB/_meta/<folder>/`, `Stage.bookkeeping_url`) holds the stage's settings
   and the fingerprint of every input (size plus checksum, ETag or recorded upstream
   checksum). A re-run compares:
     * same inputs and settings: resume (finished tasks skipped, damaged outputs redone);
     * inputs added to a stage that grows (crawl): the new ones are processed;
     * inputs removed or changed, or settings changed: refused, naming what changed;
       `--overwrite` recomputes into a fresh folder that replaces the old one only once
       it is complete, so a finished output is never deleted before its replacement is whole.
4. **Markers prove outputs**: a task marker records the size, checksum (or ETag), row
   count and local modification time of each file its task wrote, taken by the worker;
   a marker whose files differ (checked in bulk against listings: `parallel.finished_tasks`)
   is stale and its task is redone.
5. **Completion**: files no task of the current plan wrote are removed, `stats.json` gets
   the stage's section, then `_SUCCESS` is written with the manifest of outputs (name,
   size, checksum, rows) that downstream stages fingerprint their input by, built from
   the markers' records: no output is read back by the driver.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from shammie.pipeline import jobdir, lineage, parallel, ray_runtime, storage
from shammie.pipeline.errors import InputError, OutputError, StageRefused, as_output_error
from shammie.pipeline.options import option
from shammie.pipeline.stage import FOLDER_SWAPPED, SELF_PUBLISHED, InputFile, Phase, Results, Stage, Task

STAGE_RECORD = jobdir.STAGE_RECORD
# _SUCCESS key: name -> mtime_ns of each local output, beside "outputs" (which holds only what
# identifies content, since downstream stages fingerprint their input by it)
OUTPUT_STAMPS = "output_mtimes_ns"
LOCKS = "_locks"
# A lock object on an object store is refreshed this often and taken over when older
# than STALE_AFTER (a killed driver cannot release it).
HEARTBEAT_S = 30
STALE_AFTER_S = 300
RECORD_VERSION = 1


@dataclass(frozen=True)
class RunOptions:
    """How to run a stage; none of these change what it writes. Declared once for every command."""

    workers: int | None = option(None, help="tasks run at once (default: every CPU of the local Ray / the cluster)",
                                 minimum=1, metavar="N")
    ray_address: str | None = option(None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray "
                                     "started in-process)", metavar="ADDR")
    progress: bool = option(True, help="show progress bars", off_help="hide progress bars and progress messages",
                            yaml=False)
    overwrite: bool = option(False, help="recompute an output made from other inputs or settings into a fresh "
                             "folder that replaces it once complete", yaml=False)
    wait: bool = option(False, help="when another run of this stage holds the job, wait for it instead of failing",
                        yaml=False)
    verify: bool = option(False, help="on resume, re-read every finished local output and compare its checksum "
                          "instead of trusting its size and modification time", yaml=False)
    shared_filesystem: bool = option(False, help="the local job directory is on a filesystem every node of the Ray "
                                     "cluster mounts at the same path (also: SHAMMIE_SHARED_FS=1); without it a "
                                     "local job directory is refused on a cluster that spans several hosts")


# The run options about re-runs, which a command that runs in one process (export) still takes.
RERUN_FLAGS = ("overwrite", "wait")


@dataclass
class StageResult:
    section: dict[str, Any]
    status: str  # "ran" | "complete" (nothing to do) | "resumed" | "grew" | "overwrote"
    # when the output was finished (its _SUCCESS's `finished_at`); for "complete", the section is that run's
    built_at: str | None = None

    def headline(self) -> str:
        """What precedes the summary on the command line: for an output found complete, that the summary
        (with its timing) is the one recorded when it was built, not this run's."""
        if self.status != "complete":
            return ""
        return f"already complete (built {self.built_at or 'earlier'}), recorded summary: "


# ---------------------------------------------------------------- lock


class StageLock:
    """At most one run of a stage on a job at a time.

    Local jobs use an advisory `flock` (the kernel releases it when the process dies,
    so a crashed run never leaves a stale lock). On S3 the lock object is created with a
    conditional PUT (`If-None-Match: *`), so of two runs starting together exactly one
    gets it; the holder refreshes a heartbeat in it every HEARTBEAT_S with `If-Match` on
    the ETag it wrote, and a lock whose heartbeat is older than STALE_AFTER_S (a killed
    driver cannot release it) is taken over with `If-Match` on the ETag read, so of two
    runs taking over one wins. A store that lacks conditional writes gets the old best
    effort (write, wait, read back: last writer wins) and a warning."""

    def __init__(self, job: str, folder: str, stage_name: str, *, wait: bool = False, poll_s: float = 1.0,
                 warn: Callable[[str], None] | None = None):
        self.url = storage.join(job, LOCKS, f"{folder}.lock")
        self.job, self.folder, self.stage_name, self.wait, self.poll_s = job, folder, stage_name, wait, poll_s
        self.warn = warn or _warn
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "run": uuid.uuid4().hex,
                      "since": _now(), "stage": stage_name}
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag: str | None = None  # of the lock object we wrote last (conditional mode)
        self.lost = False  # another run took the lock over (our heartbeat stopped for STALE_AFTER_S)

    def _busy_message(self, holder: dict | None) -> str:
        who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
               if isinstance(holder, dict) else "another process")
        return (f"another `shammie {self.stage_name.replace('_', ' ')}` is running on {self.job} ({who}); "
                "wait for it to finish, or pass --wait to queue behind it")

    def acquire(self) -> "StageLock":
        if storage.is_remote(self.url):
            return self._acquire_remote()
        import fcntl

        path = storage.strip_file_scheme(self.url)
        folder = os.path.dirname(path)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise OutputError(f"{folder} exists and is not a folder; Shammie keeps the job's locks in it: "
                              "move it away and re-run")
        try:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot take the job lock {path}: {e.strerror or e}") from None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not self.wait:
                    holder = _read_lock_file(path)
                    os.close(fd)
                    raise StageRefused(self._busy_message(holder)) from None
                time.sleep(self.poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self.owner).encode())
        self._fd = fd
        return self

    def _acquire_remote(self) -> "StageLock":
        if storage.supports_conditional_writes(self.url):
            self._acquire_conditional()
        else:
            self.warn(f"warning: the store of {self.job} does not support conditional writes (If-None-Match); "
                      "the job lock is best effort: two runs started within a second could both take it")
            self._acquire_last_writer()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()
        return self

    def _body(self) -> bytes:
        return json.dumps({**self.owner, "heartbeat": time.time()}).encode()

    def _acquire_conditional(self) -> None:
        while True:
            self._etag = storage.create_exclusive(self.url, self._body())
            if self._etag is not None:
                return
            found = storage.read_with_etag(self.url)
            if found is None:
                continue  # released between our PUT and our read: try again
            holder = _parse_lock(found[0])
            if not _is_fresh(holder):
                # If-Match on the ETag we read: of two runs taking over a stale lock, one wins
                self._etag = storage.replace_if_match(self.url, self._body(), found[1])
                if self._etag is not None:
                    return
                continue
            if not self.wait:
                raise StageRefused(self._busy_message(holder))
            time.sleep(self.poll_s)

    def _acquire_last_writer(self) -> None:
        while True:
            holder = _read_remote_lock(self.url)
            if not _is_fresh(holder):
                storage.write_json_atomic(self.url, {**self.owner, "heartbeat": time.time()})
                time.sleep(0.5)  # last writer wins: check that it was us
                if (_read_remote_lock(self.url) or {}).get("run") == self.owner["run"]:
                    return
                continue
            if not self.wait:
                raise StageRefused(self._busy_message(holder))
            time.sleep(self.poll_s)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self._etag is None:
                    storage.write_json_atomic(self.url, {**self.owner, "heartbeat": time.time()})
                    continue
                etag = storage.replace_if_match(self.url, self._body(), self._etag)
            except Exception:  # noqa: BLE001 - a failed refresh is retried at the next beat
                continue
            if etag is None:
                self.lost = True
                self.warn(f"warning: the lock {self.url} was taken over by another run (no heartbeat from this "
                          f"one for {STALE_AFTER_S} s); two runs may now write {self.folder}/")
                return
            self._etag = etag

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            with contextlib.suppress(Exception):
                if self._etag is not None and not self.lost:
                    storage.delete_if_match(self.url, self._etag)  # never another run's lock
                elif self._etag is None and (_read_remote_lock(self.url) or {}).get("run") == self.owner["run"]:
                    storage.remove(self.url)

    def __enter__(self) -> "StageLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_remote_lock(url: str) -> dict | None:
    """The lock object's holder; None when there is none (or it was released while we read it)."""
    found = storage.read_with_etag(url)
    return None if found is None else _parse_lock(found[0])


def _parse_lock(data: bytes) -> dict | None:
    try:
        holder = json.loads(data.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _is_fresh(holder: Any) -> bool:
    """A lock whose holder refreshed its heartbeat within STALE_AFTER_S (an unreadable one is stale)."""
    try:
        return isinstance(holder, dict) and time.time() - float(holder.get("heartbeat", 0)) < STALE_AFTER_S
    except (TypeError, ValueError):
        return False


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_lock_file(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- checks before work


def check_output_writable(job: str, create: bool = True) -> None:
    """The job directory can be created and written: checked before any work (and by --dry-run,
    which passes `create=False` and so checks the nearest existing folder only)."""
    if storage.is_remote(job):
        probe = storage.join(job, f"_write-probe-{uuid.uuid4().hex}")
        try:
            storage.write_bytes_atomic(probe, b"")
            storage.remove(probe)
        except Exception as e:
            raise OutputError(f"cannot write to {job} ({type(e).__name__}: {e})") from None
        return
    path = storage.strip_file_scheme(job)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{path} exists and is not a directory")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        raise OutputError(f"cannot create {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {existing} (permission denied); choose another output")
    if not create:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, f".write-probe-{uuid.uuid4().hex}"), "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
            probe = f.name
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"cannot write to {path}: {e.strerror or e}") from None


def check_stats_file(job: str) -> None:
    """An existing stats.json must be a JSON object, found now rather than after all the work."""
    url = storage.join(job, jobdir.STATS)
    try:
        stats = storage.read_json(url)
    except ValueError as e:
        raise InputError(str(e)) from None
    if stats is not None and not isinstance(stats, dict):
        raise InputError(f"{url} is not a JSON object (it holds a {type(stats).__name__}); "
                         "move it away so the stages can record their sections")


# ---------------------------------------------------------------- the record of what made an output


def input_record(inputs: Sequence[InputFile], job: str | None = None) -> dict[str, dict]:
    """name -> where the input is and what identifies its content. An input inside the job is
    recorded relative to it ("documents/a.parquet"), so a job folder that is copied or moved
    still matches its records and resumes; an input outside it (WARC files) keeps its URL."""
    return {i.name: {"url": _job_relative(i.url, job), **i.fingerprint} for i in inputs}


def _job_relative(url: str, job: str | None) -> str:
    if job is None:
        return url
    inside = storage.relative_to(url, job)
    return url if inside is None else inside


def _same_input(old: Any, new: dict) -> bool:
    """Is the recorded input `old` the input `new`? A record of an older Shammie holds the absolute URL of
    an input inside the job: it is the same input when the rest of its fingerprint (size, checksum) is
    equal and its URL ends with the job-relative path (the job may have moved since)."""
    if old == new:
        return True
    if not isinstance(old, dict):
        return False
    old_url, new_url = str(old.get("url", "")), str(new.get("url", ""))
    rest_old = {k: v for k, v in old.items() if k != "url"}
    rest_new = {k: v for k, v in new.items() if k != "url"}
    return (rest_old == rest_new and "://" not in new_url and not new_url.startswith("/")
            and old_url.endswith("/" + new_url))


def compare_inputs(old: dict[str, dict], new: dict[str, dict]) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) input names."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(n for n in set(old) & set(new) if not _same_input(old[n], new[n]))
    return added, removed, changed


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def describe_change(stage: Stage, old: dict, settings: dict, inputs: dict) -> str | None:
    """What makes the recorded output differ from this run's, as one clause; None when nothing does."""
    parts = []
    old_settings = old.get("settings") or {}
    diff = sorted(k for k in set(old_settings) | set(settings) if old_settings.get(k) != settings.get(k))
    other_folder = "input_stage" in diff
    if other_folder:
        # Another folder's files are other inputs by nature: name the folders, not each file.
        parts.append(f"it was built from {old_settings.get('input_stage')}/ and this run reads "
                     f"{settings.get('input_stage')}/")
        diff.remove("input_stage")
    if diff:
        parts.append("settings changed (" + ", ".join(
            f"{k}: {json.dumps(old_settings.get(k))} -> {json.dumps(settings.get(k))}" for k in diff) + ")")
    if other_folder:
        return "; ".join(parts)
    added, removed, changed = compare_inputs(old.get("inputs") or {}, inputs)
    if removed:
        parts.append(f"{len(removed)} input(s) no longer given or gone ({_listing(removed)})")
    if changed:
        parts.append(f"{len(changed)} input(s) changed since ({_listing(changed)})")
    if added and not stage.grows:
        parts.append(f"{len(added)} new input(s) ({_listing(added)})")
    return "; ".join(parts) or None


# ---------------------------------------------------------------- running


class StageContext:
    """What a stage's `phases` get: the planned tasks, where they write, and the earlier phases' results.

    `out` is the data folder being written, `books` its bookkeeping folder (task markers, work
    files, what the stage keeps besides its data). A task output is named relative to `out`,
    or by a full URL (`ctx.book(...)` for one in `books`). `done` maps each finished phase's name
    to its summary (or its task results)."""

    def __init__(self, stage: Stage, run: RunOptions, out: str, tasks: list[Task], settings: dict,
                 books: str | None = None, check_location: bool = True):
        self.stage, self.run, self.out, self.tasks = stage, run, out, tasks
        # refuse a local marker folder on a cluster of several hosts (unless --shared-filesystem)
        self.check_location = check_location
        self.books = books or out
        self.done: dict[str, Any] = {}
        # per timed phase so far: wall seconds, CPU seconds, tasks (`run_phases` keeps it up to date)
        self.timings: dict[str, dict] = {}
        # url -> fingerprint of each planned output a phase's task wrote (or proved on resume), as
        # the worker recorded it: the output manifest is built from these, without reading any file
        self.output_records = _PlannedRecords({output_url(out, o) for t in tasks for o in t.outputs})
        self.worker_key = json.dumps([type(stage).__module__, type(stage).__qualname__, stage.job, settings],
                                     sort_keys=True, default=str)

    def run_phase(self, phase: Phase, tasks: Sequence[Task]) -> dict[str, dict]:
        """Run the phase's tasks whose markers are missing or stale; return every task's stats by name
        (with the runner's CPU measurement, `TASK_CPU`). Markers go under `phase.markers` of the
        bookkeeping folder (the stage's own `_tasks/` when None)."""
        call = _TaskCall(self.stage, self.out, self.worker_key, phase.task)
        marker_root = storage.join(self.books, phase.markers) if phase.markers else self.books
        if phase.on_driver:
            return {t.name: _run_on_driver(call, t, marker_root if phase.markers else None) for t in tasks}
        return parallel.run_tasks(
            self.stage.job, self.stage.name,
            [(t.name, t.payload, [output_url(self.out, o) for o in t.outputs]) for t in tasks],
            call, desc=phase.desc or self.stage.name.replace("_", " "), unit=phase.unit or self.stage.progress_unit,
            count_key=self.stage.progress_count_key if phase.count_key == "" else phase.count_key,
            max_in_flight=self.run.workers,
            num_cpus=self.stage.num_cpus, progress=self.run.progress, markers=marker_root,
            ray_address=self.run.ray_address, verify=self.run.verify, records=self.output_records,
            shared_filesystem=self.run.shared_filesystem if self.check_location else None)

    def book(self, *parts: str) -> str:
        """A URL in the bookkeeping folder (work files, the dedup index, a removal list)."""
        return storage.join(self.books, *parts)


def output_url(out: str, name: str) -> str:
    """A task output: a name relative to the data folder `out`, or already a full URL."""
    if "://" in name or name.startswith("/"):
        return name
    return storage.join(out, name)


def books_of(stage: Stage, target: str) -> str:
    """The bookkeeping folder of `target`: the stage's, or, for an --overwrite's fresh folder
    JOB/.<folder>.new-<id>, JOB/_meta/.<folder>.new-<id> (swapped in with it)."""
    if target == stage.output_url():
        return stage.bookkeeping_url()
    return jobdir.meta_path(stage.job, storage.basename(target.rstrip("/")))


class _PlannedRecords(dict):
    """Output records kept for the planned outputs only: the intermediate files of a multi-phase
    stage (dedup's signatures, buckets, ...) would otherwise cost ~0.5 KB each in the driver."""

    def __init__(self, planned: set[str]):
        super().__init__()
        self.planned = planned

    def __setitem__(self, url: str, record: dict) -> None:
        if url in self.planned:
            super().__setitem__(url, record)


_WORKER_STAGES: dict[str, Stage] = {}
# What the runner adds to each task's result (and marker): the task's CPU seconds (process time of
# the worker around the task, its set-up left out) and the set-up's (the stage's `setup()` the first
# time a worker runs it, plus what the task reports itself under SETUP_CPU: word splitters loaded).
TASK_CPU = "_cpu_seconds"
TASK_SETUP_CPU = "_setup_cpu_seconds"
SETUP_CPU = "setup_cpu_seconds"


class _TaskCall:
    """Picklable task function: runs a phase's function, or the worker's set-up copy of the stage
    (`run_task`), and measures the CPU it took, so every stage's cost is known without code of its own.

    `key` (the stage's class, job and settings, computed once by the driver) names the
    set-up copy a worker keeps across tasks; settings can cost I/O (model checksums)."""

    def __init__(self, stage: Stage, out: str, key: str, fn: Callable[[Any], dict] | None = None):
        self.stage, self.out, self.key, self.fn = stage, out, key, fn

    def __call__(self, payload: Any) -> dict:
        start = time.process_time()
        setup = 0.0
        if self.fn is not None:
            result = dict(self.fn(payload) or {})
        else:
            ready = _WORKER_STAGES.get(self.key)
            if ready is None:
                self.stage.setup()
                ready = _WORKER_STAGES[self.key] = self.stage
                setup = time.process_time() - start
            result = dict(ready.run_task(payload, self.out) or {})
        spent = time.process_time() - start
        reported = result.get(SETUP_CPU)
        if isinstance(reported, (int, float)):
            setup += float(reported)
        result[TASK_CPU] = round(max(spent - setup, 0.0), 4)
        if setup:
            result[TASK_SETUP_CPU] = round(setup, 4)
        return result


def _run_on_driver(call: "_TaskCall", task: Task, markers: str | None) -> dict:
    """A task of an on-driver phase, in this process; with `markers`, a finished task (its marker, in the
    format `parallel.run_tasks` writes, so either resumes the other) is not run again."""
    marker = storage.join(markers, jobdir.TASKS, f"{task.name}.json") if markers else None
    if marker is not None:
        try:
            done = storage.read_json(marker)
        except ValueError:
            done = None
        if isinstance(done, dict):
            return parallel.strip_marker(done)
    result = call(task.payload)
    if marker is not None:
        storage.write_json_atomic(marker, {**result, parallel.OUTPUTS_KEY: {}})
    return result


def run_phases(stage: Stage, ctx: StageContext) -> Results:
    """Run the stage's phases in order; return the last one's task results for `summarize`, with every
    phase's summary (`Results.phases`) and timing (`Results.timings`: wall seconds without Ray's start-up,
    CPU seconds the tasks took, set-up CPU apart, and the task count)."""
    timings = ctx.timings
    last: dict[str, dict] = {}
    for phase in stage.phases(ctx):
        began, ray_before = time.monotonic(), ray_runtime.start_seconds()
        results = ctx.run_phase(phase, phase.plan(ctx.done))
        cpu = setup = 0.0
        for r in results.values():
            cpu += float(r.pop(TASK_CPU, 0.0) or 0.0)
            setup += float(r.pop(TASK_SETUP_CPU, 0.0) or 0.0)
        ctx.done[phase.name] = phase.summary(results) if phase.summary is not None else results
        wall = time.monotonic() - began - (ray_runtime.start_seconds() - ray_before)
        timing = timings.setdefault(phase.stats_name, {"seconds": 0.0, "cpu_seconds": 0.0, "tasks": 0})
        timing["seconds"] += wall
        timing["cpu_seconds"] += cpu
        timing["tasks"] += len(results)
        if setup:
            timing["setup_cpu_seconds"] = timing.get("setup_cpu_seconds", 0.0) + setup
        last = results
    if stage.work and not stage.keep_work():
        storage.remove(ctx.book(stage.work))
    rounded = {name: {k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}
               for name, t in timings.items()}
    return Results(last, ctx.done, rounded)


def add_costs(section: dict[str, Any], timings: dict[str, dict], ray_start: float) -> None:
    """The stats section's cost keys, one schema for every stage: `phases` (per phase: seconds, cpu_seconds,
    tasks, setup_cpu_seconds when any), `cpu_seconds` (their sum, set-up left out), `setup_cpu_seconds`,
    `ray_start_seconds` (within `seconds`, left out of the phases' seconds). Each phase also gets
    `order`, its place in the run: stats.json is written with sorted keys, which loses the dict's order."""
    for place, timing in enumerate(timings.values()):
        timing["order"] = place
    section["phases"] = timings
    section["cpu_seconds"] = round(sum(t["cpu_seconds"] for t in timings.values()), 3)
    setup = sum(t.get("setup_cpu_seconds", 0.0) for t in timings.values())
    if setup:
        section["setup_cpu_seconds"] = round(setup, 3)
    section["ray_start_seconds"] = round(ray_start, 3)


def run_stage(stage: Stage, run: RunOptions | None = None, *, log: Callable[[str], None] | None = None) -> StageResult:
    """Run one stage on its job under the rules in this module's docstring; return its stats section."""
    run = run or RunOptions()
    say = log or (print if run.progress else (lambda _msg: None))
    job = stage.job
    started = time.monotonic()
    if run.workers is not None and run.workers < 1:
        raise InputError("--workers must be at least 1")
    folder = stage.output_folder()
    out = stage.output_url()

    check_output_writable(job, create=False)
    check_stats_file(job)
    inputs = stage.resolve_inputs()
    if not inputs:
        raise InputError(f"{stage.name}: the input is empty; nothing would be written")
    # ray.init retries an unreachable address for minutes: check it in seconds, before the folder exists
    ray_runtime.check_ray_address(run.ray_address)
    # the job, and an output outside it (a store on another path), must both be seen by every node
    for where in dict.fromkeys((job, stage.output_url())):
        ray_runtime.check_job_location(where, run.ray_address, shared_filesystem=run.shared_filesystem)
    with output_errors():
        check_output_writable(job)
    settings = stage.settings()
    record_inputs = input_record(inputs, job)

    publish = PUBLISHING[stage.publishing]
    with StageLock(job, folder, stage.name, wait=run.wait):
        books = stage.bookkeeping_url()
        old = _read_record(books)
        has_output = bool(_data_files(out, stage))
        if old is None and has_output:
            old = publish.adopt_unrecorded(stage, out, books)
        change = describe_change(stage, old, settings, record_inputs) if old is not None \
            else publish.unrecorded_change(has_output, books)
        if change and not run.overwrite:
            raise StageRefused(f"{out} was made from other input or settings: {change}. Pass --overwrite to "
                               f"recompute it into a fresh folder that replaces it once complete, or use another job")
        existing = old is not None or has_output
        target = publish.overwrite_target(stage, settings, record_inputs) if run.overwrite and existing else out
        if run.overwrite and existing:
            status = "overwrote"
        else:
            status = "resumed" if old is not None else "ran"
            if old is not None and compare_inputs(old.get("inputs") or {}, record_inputs)[0]:
                status = "grew"

        tasks = stage.plan(inputs, target)
        if status == "resumed":
            section = publish.complete_section(stage, out, books, tasks, verify=run.verify)
            if section is not None:
                say(f"{out} is already complete for these inputs and settings; nothing to do")
                return StageResult(section, "complete", _finished_at(books))
        try:
            with output_errors():
                section = _execute(stage, run, target, tasks, settings, record_inputs, inputs, started, say)
        except BaseException:
            if target != out:
                say(f"the previous {folder}/ is untouched; the partial replacement stays in {target} "
                    "and is resumed by the same command")
            raise
        if target != out:
            with output_errors():
                _swap_in(target, out, books_of(stage, target), books)
        return StageResult(section, status)


def _finished_at(books: str) -> str | None:
    """When the output recorded in `books` was finished (None for an older _SUCCESS without the time)."""
    try:
        success = storage.read_json(storage.join(books, jobdir.SUCCESS))
    except ValueError:
        return None
    return success.get("finished_at") if isinstance(success, dict) else None


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """A full disk or read-only output is a one-line OutputError, not an OSError traceback."""
    try:
        yield
    except OSError as e:
        converted = as_output_error(e)
        if converted is None:
            raise
        raise converted from None


def _execute(stage: Stage, run: RunOptions, target: str, tasks: list[Task], settings: dict,
             record_inputs: dict, inputs: list[InputFile], started: float, say) -> dict[str, Any]:
    job = stage.job
    storage.makedirs(target)
    books = books_of(stage, target)
    publish = PUBLISHING[stage.publishing]
    publish.start(books)
    storage.write_json_atomic(storage.join(books, STAGE_RECORD), {
        "version": RECORD_VERSION, "stage": stage.name, "settings": settings, "inputs": record_inputs,
        # the job folder read and its build id then: the output's lineage (pipeline/lineage.py)
        "built_from": lineage.built_from(job, settings.get("input_stage")),
        "started_at": _now()})
    say(f"shammie {stage.name.replace('_', ' ')}: {len(inputs)} input file(s) -> {target}")
    ray_before = ray_runtime.start_seconds()
    ctx = StageContext(stage, run, target, tasks, settings, books=books)
    results = run_phases(stage, ctx)
    ray_start = ray_runtime.start_seconds() - ray_before
    planned = {o for t in tasks for o in t.outputs}
    publish.sweep(target, planned, stage)
    outputs, stamps = _output_manifest(target, planned, ctx.output_records)
    section = stage.summarize(results)
    section.setdefault("seconds", round(time.monotonic() - started, 3))
    # ray_start_seconds is within "seconds"; the throughput below leaves it out (a small stage measured Ray, not itself)
    add_costs(section, results.timings, ray_start)
    count = section.get(stage.progress_count_key)
    working = section["seconds"] - section.get("ray_start_seconds", 0)
    if isinstance(count, (int, float)) and working > 0:
        section.setdefault(f"{stage.progress_unit}_per_s", round(count / max(working, 1e-9), 2))
    section["settings"] = settings
    section["inputs"] = len(inputs)
    stage.record_section(section)
    success_url = storage.join(books, jobdir.SUCCESS)
    storage.write_json_atomic(success_url, {
        **publish.kept_success(success_url),
        "stage": stage.name, "finished_at": _now(), "documents": section.get("documents"), "outputs": outputs,
        "build_id": publish.build_id(section, outputs),
        **({OUTPUT_STAMPS: stamps} if stamps else {})})
    return section


class FolderSwapped:
    """The runner publishes the output folder: its tasks write into it (or, for --overwrite, into a fresh
    folder swapped in whole once complete), files no task planned are swept, `_SUCCESS` (in the bookkeeping
    folder) is removed when work starts and written last with the output manifest."""

    def adopt_unrecorded(self, stage: Stage, out: str, books: str) -> dict | None:
        """An output without its record: an older Shammie's layout, or an --overwrite stopped mid-swap."""
        moved = jobdir.move_legacy_bookkeeping(stage.job, stage.output_folder())
        if moved:
            _warn(f"moved {', '.join(moved)} of {out} (an older Shammie's layout) to {books}")
        else:
            _finish_interrupted_swap(stage, books)
        return _read_record(books)

    def unrecorded_change(self, has_output: bool, books: str) -> str | None:
        if has_output or storage.exists(storage.join(books, jobdir.SUCCESS)):
            return "it was written without a record of its inputs and settings (an older Shammie, or by hand)"
        return None

    def overwrite_target(self, stage: Stage, settings: dict, record_inputs: dict) -> str:
        # Named by what it is made from, so an interrupted --overwrite resumes in the same place.
        digest = _digest({"settings": settings, "inputs": record_inputs})
        return storage.join(stage.job, f".{stage.output_folder()}.new-{digest}")

    def complete_section(self, stage: Stage, out: str, books: str, tasks: list[Task], *,
                         verify: bool) -> dict | None:
        if storage.exists(storage.join(books, jobdir.SUCCESS)) and _complete_and_valid(out, books, tasks, verify):
            section = stage.read_section()
            return section if isinstance(section, dict) else None
        return None

    def start(self, books: str) -> None:
        # No longer complete from here on: a reader sees either the old _SUCCESS or none.
        storage.remove(storage.join(books, jobdir.SUCCESS))

    def sweep(self, target: str, planned: set[str], stage: Stage) -> None:
        _remove_unplanned(target, planned, stage)

    def kept_success(self, success_url: str) -> dict:
        return {}

    def build_id(self, section: dict, outputs: dict) -> str:
        return lineage.build_id_of_outputs(outputs)


class SelfPublished:
    """The stage publishes its output itself, atomically (the store: new shard names, manifest last;
    the export: a folder renamed into place). The runner records inputs, settings and stats beside it,
    never sweeps or removes its files, and --overwrite is the stage's own atomic replacement (a new build)."""

    def adopt_unrecorded(self, stage: Stage, out: str, books: str) -> dict | None:
        return None

    def unrecorded_change(self, has_output: bool, books: str) -> str | None:
        return None  # the stage checks what it finds (a store's manifest, an earlier export) itself

    def overwrite_target(self, stage: Stage, settings: dict, record_inputs: dict) -> str:
        return stage.output_url()

    def complete_section(self, stage: Stage, out: str, books: str, tasks: list[Task], *,
                         verify: bool) -> dict | None:
        section = stage.read_section()
        if storage.exists(storage.join(books, jobdir.SUCCESS)) and isinstance(section, dict):
            return section
        return None

    def start(self, books: str) -> None:
        pass

    def sweep(self, target: str, planned: set[str], stage: Stage) -> None:
        pass

    def kept_success(self, success_url: str) -> dict:
        previous = storage.read_json(success_url)  # the store keeps its own fields (its stats) in it
        return previous if isinstance(previous, dict) else {}

    def build_id(self, section: dict, outputs: dict) -> str:
        return section.get("build_id") or lineage.build_id_of_outputs(outputs)  # the store's build has its own


# Stage.publishing names one of these.
PUBLISHING = {FOLDER_SWAPPED: FolderSwapped(), SELF_PUBLISHED: SelfPublished()}


def _digest(obj: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def output_record(url: str) -> dict[str, Any]:
    """Size and checksum of a finished output, plus its row count when it is Parquet (from the footer)."""
    record = parallel.output_fingerprint(url)
    if record is None:
        raise RuntimeError(f"{url} is missing although its task finished")
    return parallel.content_of(record)


def _output_manifest(target: str, planned: set[str], records: dict[str, dict]) -> tuple[dict, dict]:
    """(name -> size, checksum or ETag, rows; name -> mtime_ns of local files) of the planned outputs.

    Taken from the fingerprints the workers recorded in the task markers; a file no task of
    this run reported, or reported without its row count (a marker of an older Shammie), is
    read here instead."""
    outputs, stamps = {}, {}
    for name in sorted(planned):
        url = storage.join(target, name)
        record = records.get(url)
        if record is None or (name.endswith(".parquet") and "rows" not in record):
            record = parallel.output_fingerprint(url)
            if record is None:
                raise RuntimeError(f"{url} is missing although its task finished")
        outputs[name] = parallel.content_of(record)
        if parallel.STAMP_KEY in record:
            stamps[name] = record[parallel.STAMP_KEY]
    return outputs, stamps


def _read_record(out: str) -> dict | None:
    try:
        record = storage.read_json(storage.join(out, STAGE_RECORD))
    except ValueError:
        return {"settings": {}, "inputs": {}, "damaged": True}
    return record if isinstance(record, dict) else None


def _data_files(out: str, stage: Stage) -> list[str]:
    return [n for n in storage.listdir(out)
            if not n.startswith((".", "_")) and n not in stage.keep_files]


def _complete_and_valid(out: str, books: str, tasks: list[Task], verify: bool = False) -> bool:
    """The folder's _SUCCESS (in `books`) lists exactly the planned outputs and each file still matches
    it (checked against one listing per folder, as task markers are: `parallel.output_matches`)."""
    try:
        marker = storage.read_json(storage.join(books, jobdir.SUCCESS))
    except ValueError:
        return False
    if not isinstance(marker, dict) or not isinstance(marker.get("outputs"), dict):
        return False
    planned = {o for t in tasks for o in t.outputs}
    if set(marker["outputs"]) != planned:
        return False
    stamps = marker.get(OUTPUT_STAMPS) if isinstance(marker.get(OUTPUT_STAMPS), dict) else {}
    urls = {n: storage.join(out, n) for n in marker["outputs"]}
    listed = storage.stat_files(list(urls.values()))
    for name, fp in marker["outputs"].items():
        if not isinstance(fp, dict):
            return False
        recorded = {**fp, parallel.STAMP_KEY: stamps[name]} if name in stamps else fp
        if not parallel.output_matches(recorded, listed[urls[name]], urls[name], verify):
            return False
    return True


def _remove_unplanned(target: str, planned: set[str], stage: Stage) -> None:
    """Outputs of tasks that are not in this plan (stale files) never survive into a complete folder."""
    for name in _data_files(target, stage):
        if name not in planned:
            storage.remove(storage.join(target, name))


def _swap_in(new: str, out: str, new_books: str, books: str) -> None:
    """Replace `out` by the complete `new` folder, and its bookkeeping `books` by `new_books`; the old
    ones are removed only after the swap. The data folder moves first and its records last (they hold
    `_SUCCESS`), so a reader never sees a `_SUCCESS` describing the other folder; a run stopped between
    the two renames is finished by the next run (`_finish_interrupted_swap`)."""
    tag = uuid.uuid4().hex[:8]
    parked = []
    if new_books != books and storage.exists(books):
        storage.remove(storage.join(books, jobdir.SUCCESS))  # the old output is no longer the complete one
        parked.append(_park(books, tag))
    if storage.exists(out):
        parked.append(_park(out, tag))
    storage.rename(new, out)
    if new_books != books:
        storage.rename(new_books, books)
    for old in parked:
        storage.remove(old)


def _park(url: str, tag: str) -> str:
    parent, name = os.path.split(url.rstrip("/"))
    old = storage.join(parent, f".{name}.old-{tag}")
    storage.rename(url, old)
    return old


def _finish_interrupted_swap(stage: Stage, books: str) -> None:
    """An --overwrite stopped between moving its new folder in and moving its records: the data folder
    is in place, its records still under the fresh folder's name. Move them (under the lock)."""
    if storage.exists(books):
        return
    meta = storage.join(stage.job, jobdir.META)
    prefix = f".{stage.output_folder()}.new-"
    for name in storage.listdir(meta) if storage.exists(meta) else []:
        if name.startswith(prefix) and not storage.exists(storage.join(stage.job, name)):
            storage.rename(storage.join(meta, name), books)
            return
