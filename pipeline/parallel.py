"""Run one Ray task per unit of work (usually one input file), resumably.

Why hand-written: Ray schedules and retries tasks, but the skip-what-is-done
bookkeeping, bounded submission and the live progress bar are ours. Each task
writes its output atomically, then its marker `<stage>/_tasks/<name>.json` (the
task's stats) from inside the worker, so work finished while the driver died is
kept. A re-run skips tasks that have a marker; Ray re-runs a task whose worker
died (`max_retries`), and the atomic writes make a retried task's output whole.

Tasks report live progress with `report_progress(n)`: counts go to a small Ray
actor at most twice a second, and the driver's bar shows them (docs and docs/s).
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Sequence

from tqdm import tqdm

from shammie.pipeline import jobdir

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


# Storage settings given to the driver must hold in the workers too: workers of an
# already-running Ray do not see variables set after it started (a custom S3 endpoint,
# test credentials). Forwarded only when an endpoint or a Shammie setting is set, because
# a runtime_env makes Ray start a separate worker pool.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")


def forwarded_env() -> dict[str, str]:
    import os

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SHAMMIE_")})
    if not any(k.startswith(("AWS_ENDPOINT_URL", "SHAMMIE_")) for k in env):
        return {}
    return env


def _run_and_mark(fn: Callable[[Any], dict], payload: Any, job: str, stage: str, name: str, progress=None) -> dict:
    global _progress_handle, _progress_pending
    _progress_handle, _progress_pending = progress, 0
    try:
        result = dict(fn(payload) or {})
    finally:
        _flush_progress()
        _progress_handle = None
    jobdir.write_task_marker(job, stage, name, result)
    return result


def run_tasks(
    job: str,
    stage: str,
    tasks: Sequence[tuple[str, Any]],
    fn: Callable[[Any], dict],
    *,
    desc: str = "tasks",
    unit: str = "docs",
    count_key: str | None = "documents",
    max_in_flight: int | None = None,
    num_cpus: float = 1,
    max_retries: int = 3,
    progress: bool = True,
) -> dict[str, dict]:
    """Run `fn(payload)` for each `(name, payload)` not already done; return all results by name.

    `fn` must be importable by Ray workers (a module-level function) and must
    write its outputs atomically before returning a JSON-able stats dict. Live
    progress comes from `report_progress`; tasks that never call it are counted
    when they finish, by their result's `count_key`.
    """
    import ray

    results: dict[str, dict] = {}
    todo = []
    for name, payload in tasks:
        done = jobdir.read_task_marker(job, stage, name)
        if done is not None:
            results[name] = done
        else:
            todo.append((name, payload))
    if not todo:
        return results

    options = dict(num_cpus=num_cpus, max_retries=max_retries)
    env = forwarded_env()
    if env:
        options["runtime_env"] = {"env_vars": env}
    remote = ray.remote(**options)(_run_and_mark)
    counter = ray.remote(num_cpus=0)(_ProgressCounter).remote() if progress else None
    if max_in_flight is None:
        max_in_flight = max(1, int(ray.cluster_resources().get("CPU", 1)))

    import sys

    bar = tqdm(total=len(tasks), initial=len(results), desc=desc, unit="file", disable=not progress,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    start = time.monotonic()
    finished_count = 0
    pending: dict[Any, str] = {}
    queue = collections.deque(todo)
    try:
        while queue or pending:
            while queue and len(pending) < max_in_flight:
                name, payload = queue.popleft()
                pending[remote.remote(fn, payload, job, stage, name, counter)] = name
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_FLUSH_EVERY_S)
            for ref in ready:
                name = pending.pop(ref)
                results[name] = ray.get(ref)
                if count_key:
                    finished_count += int(results[name].get(count_key, 0) or 0)
                bar.update(1)
            if counter is not None:
                done = ray.get(counter.get.remote()) or finished_count
                elapsed = max(time.monotonic() - start, 1e-9)
                bar.set_postfix_str(f"{done} {unit}, {done / elapsed:.1f} {unit}/s", refresh=False)
                bar.update(0)
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
        if counter is not None:
            ray.kill(counter)
    return results
