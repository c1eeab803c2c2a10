"""Run one Ray task per unit of work (usually one input file), resumably.

Why hand-written: Ray schedules and retries tasks, but the skip-what-is-done
bookkeeping, bounded submission and the progress bar are ours. Each task writes
its output atomically, then its marker `<stage>/_tasks/<name>.json` (the task's
stats) from inside the worker, so work finished while the driver died is kept.
A re-run skips tasks that have a marker; Ray re-runs a task whose worker died.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from tqdm import tqdm

from shammie.pipeline import jobdir


def _run_and_mark(fn: Callable[[Any], dict], payload: Any, job: str, stage: str, name: str) -> dict:
    result = dict(fn(payload) or {})
    jobdir.write_task_marker(job, stage, name, result)
    return result


def run_tasks(
    job: str,
    stage: str,
    tasks: Sequence[tuple[str, Any]],
    fn: Callable[[Any], dict],
    *,
    desc: str = "tasks",
    count_key: str | None = "documents",
    max_in_flight: int | None = None,
    num_cpus: float = 1,
    max_retries: int = 3,
    progress: bool = True,
) -> dict[str, dict]:
    """Run `fn(payload)` for each `(name, payload)` not already done; return all results by name.

    `fn` must be importable by Ray workers (a module-level function) and must
    write its outputs atomically before returning a JSON-able stats dict.
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

    remote = ray.remote(num_cpus=num_cpus, max_retries=max_retries)(_run_and_mark)
    if max_in_flight is None:
        max_in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    bar = tqdm(total=len(tasks), initial=len(results), desc=desc, unit="task",
               disable=not progress, dynamic_ncols=True)
    counted = 0
    start = time.monotonic()
    pending: dict[Any, str] = {}
    queue = list(todo)
    try:
        while queue or pending:
            while queue and len(pending) < max_in_flight:
                name, payload = queue.pop(0)
                pending[remote.remote(fn, payload, job, stage, name)] = name
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name = pending.pop(ref)
                results[name] = ray.get(ref)
                bar.update(1)
                if count_key:
                    counted += int(results[name].get(count_key, 0) or 0)
                    elapsed = max(time.monotonic() - start, 1e-9)
                    bar.set_postfix({count_key: counted, f"{count_key}/s": f"{counted / elapsed:.1f}"})
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref, force=True)
    return results
