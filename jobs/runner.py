"""Run a whole job: crawl -> dedup -> edu score -> edu subset -> shard store, on Ray.

Resume works at two levels. Here, a step whose output folder is complete
(`_SUCCESS`, see `pipeline/jobdir.py`) is skipped; inside a step, the stage skips
the tasks whose markers exist (`pipeline/parallel.py`). Re-running the same
command after a crash therefore redoes only the unfinished tasks.

Each step reads the folder the previous enabled step wrote (passed explicitly as
`input_stage`), so a leftover folder from an older config (say `edu-2/`) is never
picked up by accident.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from shammie.jobs.config import JobConfig
from shammie.pipeline import jobdir, storage

RUN_SECTION = "run"
JOB_CONFIG_FILE = "job.yaml"


@dataclass
class Step:
    name: str            # stats.json section / display name
    stage: str           # config block it comes from
    folder: str          # output folder URL
    input_stage: str | None
    call: Callable[[], dict] = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return storage.exists(storage.join(self.folder, jobdir.SUCCESS))


def subset_folder(threshold: float) -> str:
    return f"edu-{threshold:g}"


def _drop_none(options: dict[str, Any]) -> dict[str, Any]:
    """Options left null in the config fall back to the stage's own default."""
    return {k: v for k, v in options.items() if v is not None}


def plan(config: JobConfig, *, ray_address: str | None = None, progress: bool = True) -> list[Step]:
    """The steps of the job, upstream first (disabled stages are left out)."""
    job = config.output
    workers = config["workers"]
    ray_address = ray_address or config["ray_address"]
    common = _drop_none({"workers": workers, "ray_address": ray_address})
    steps: list[Step] = []
    previous: str | None = None

    if config.enabled("crawl"):
        c = config.stage("crawl")
        options = _drop_none({k: c[k] for k in ("limit_files", "languages", "language_threshold", "lid_model", "keep_removed")})
        inputs = list(config["input"])

        def run_crawl(options=options, inputs=inputs) -> dict:
            from shammie.pipeline.crawl import crawl

            kwargs = dict(options)
            if "languages" in kwargs:
                kwargs["languages"] = tuple(kwargs["languages"])
            return crawl(inputs, job, **common, **kwargs, progress=progress)

        steps.append(Step("crawl", "crawl", jobdir.stage_path(job, jobdir.DOCUMENTS), None, run_crawl,
                          {"input": inputs, **options}))
        previous = jobdir.DOCUMENTS

    if config.enabled("dedup"):
        options = {"across_snapshots": config.stage("dedup")["across_snapshots"]}

        def run_dedup(options=options, input_stage=previous) -> dict:
            from shammie.dedup.minhash import dedup

            return dedup(job, **common, **options, input_stage=input_stage, progress=progress)

        steps.append(Step("dedup", "dedup", jobdir.stage_path(job, jobdir.DEDUPED), previous, run_dedup, options))
        previous = jobdir.DEDUPED

    if config.enabled("edu"):
        e = config.stage("edu")
        score_options = _drop_none({"model": e["model"], "backend": e["backend"]})

        def run_score(options=score_options, input_stage=previous) -> dict:
            from shammie.filters.edu import score

            return score(job, **options, input_stage=input_stage, **common, progress=progress)

        steps.append(Step("edu_score", "edu", jobdir.stage_path(job, jobdir.SCORED), previous, run_score, score_options))
        threshold = e["threshold"]
        folder = subset_folder(threshold)

        def run_subset(threshold=threshold, folder=folder) -> dict:
            from shammie.filters.edu import subset

            return subset(job, threshold=threshold, output=folder, input_stage=jobdir.SCORED)

        steps.append(Step("edu_subset", "edu", jobdir.stage_path(job, folder), jobdir.SCORED, run_subset,
                          {"threshold": threshold}))
        previous = folder

    if config.enabled("shard"):
        s = config.stage("shard")
        options = _drop_none({k: s[k] for k in ("group_by", "tokenizer", "train_tokenizer", "tokenizer_type", "seq_len", "top_k")})
        store = config.store

        def run_shard(options=options, input_stage=previous, store=store) -> dict:
            from shammie.mixing.store import build_store

            return build_store(job, store, **options, input_stage=input_stage, **common, progress=progress)

        steps.append(Step("shard", "shard", store, previous, run_shard, {"store": store, **options}))
    return steps


def format_plan(config: JobConfig, steps: list[Step], *, ray_address: str | None = None) -> str:
    import os

    address = ray_address or config["ray_address"] or os.environ.get("RAY_ADDRESS")
    lines = [
        f"job {config['name']!r}" + (f" from {config.path}" if config.path else ""),
        f"  output:  {config.output}",
        f"  ray:     {address or 'embedded local Ray'}" + (f", {config['workers']} workers" if config["workers"] else ""),
    ]
    if config.overrides:
        lines.append(f"  --set:   {' '.join(config.overrides)}")
    disabled = [s for s in ("crawl", "dedup", "edu", "shard") if not config.enabled(s)]
    lines.append("steps:")
    for i, step in enumerate(steps, 1):
        status = "done, skip" if step.done else ("resume" if _has_task_markers(step) else "run")
        source = step.input_stage or ("input" if step.stage == "crawl" else "most downstream complete folder")
        lines.append(f"  {i}. {step.name:<11} {source} -> {step.folder}  [{status}]")
        for key, value in step.options.items():
            if key == "input":
                from shammie.jobs.config import is_example_input

                shown = [v + (" (generated on the first run)" if is_example_input(v) and not os.path.exists(v) else "")
                         for v in value[:5]]
                lines.append(f"       input: {len(value)} item(s): {', '.join(shown)}{' ...' if len(value) > 5 else ''}")
            elif key != "store":
                lines.append(f"       {key}: {value}")
    if disabled:
        lines.append(f"disabled: {', '.join(disabled)}")
    return "\n".join(lines)


def _has_task_markers(step: Step) -> bool:
    return bool(storage.listdir(storage.join(step.folder, jobdir.TASKS)))


def _warn_changed_options(config: JobConfig, steps: list[Step], log: Callable[[str], None]) -> None:
    """A finished step is skipped even if its options changed since; say so."""
    saved = storage.join(config.output, JOB_CONFIG_FILE)
    try:
        old_values = yaml.safe_load(storage.read_bytes(saved).decode()) if storage.exists(saved) else None
        old_steps = {s.name: (s.input_stage, s.options)
                     for s in plan(JobConfig(path=None, values=old_values))} if old_values else {}
    except Exception:  # a job.yaml from another version: nothing to compare with
        return
    for step in steps:
        if step.done and step.name in old_steps and old_steps[step.name] != (step.input_stage, step.options):
            log(f"warning: {step.name} is complete in {step.folder} but its input or options changed since; "
                f"it is skipped (delete {step.folder} to redo it)")


def _warn_local_output_on_cluster(job: str, log: Callable[[str], None]) -> None:
    """Workers write their outputs themselves: on several hosts a local job dir must be shared."""
    import ray

    if storage.is_remote(job) or not ray.is_initialized():
        return
    hosts = {n.get("NodeManagerAddress") for n in ray.nodes() if n.get("Alive")}
    if len(hosts) > 1:
        log(f"warning: the job directory {job} is a local path but the cluster spans {len(hosts)} hosts; "
            "it must be a filesystem every node mounts at that path, otherwise use an s3:// output")


def run_job(config: JobConfig, *, ray_address: str | None = None, progress: bool = True,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every unfinished step; return {step name: stats or "skipped"}."""
    from shammie.pipeline.ray_runtime import init_ray

    job = config.output
    jobdir.ensure_job_dir(job)
    steps = plan(config, ray_address=ray_address, progress=progress)
    _warn_changed_options(config, steps, log)
    storage.write_bytes_atomic(storage.join(job, JOB_CONFIG_FILE), config.to_yaml().encode())
    todo = [s for s in steps if not s.done]
    summary: dict[str, Any] = {s.name: "skipped (complete)" for s in steps if s.done}
    if not todo:
        log(f"job {config['name']!r}: every step is already complete in {job}")
        return summary
    where = init_ray(ray_address or config["ray_address"], num_cpus=config["workers"])
    log(f"job {config['name']!r} on {where}: {len(todo)} of {len(steps)} steps to run")
    _warn_local_output_on_cluster(job, log)
    timings = jobdir.read_stats(job).get(RUN_SECTION, {}).get("steps", {})
    for i, step in enumerate(steps, 1):
        if step.done:
            log(f"[{i}/{len(steps)}] {step.name}: complete, skipped")
            continue
        log(f"[{i}/{len(steps)}] {step.name}: {step.input_stage or 'input'} -> {step.folder}")
        start = time.monotonic()
        result = step.call() or {}
        seconds = time.monotonic() - start
        summary[step.name] = result
        timings[step.name] = {"seconds": round(seconds, 3), "documents": result.get("documents")}
        jobdir.update_stats(job, RUN_SECTION, {"name": config["name"], "steps": timings})
        log(f"[{i}/{len(steps)}] {step.name}: done in {seconds:.1f} s"
            + (f", {result['documents']} documents" if "documents" in result else ""))
    return summary
