"""Run a whole job: crawl -> dedup -> [decontaminate] -> [classify] -> edu score -> edu subset -> shard store
-> [export]: the job stages of the registry (`pipeline/registry.py`), in its order.

Each step is a stage (`pipeline/stage.py`) run by `run_stage` (`pipeline/runner.py`),
so a job obeys exactly the rules of the single-stage commands: a complete step whose
inputs and settings are unchanged is skipped, an interrupted one resumes, and a step
whose recorded inputs or settings differ is refused (`--overwrite` recomputes it).
One rule is the job's own: a step whose input folder was just rewritten in this run
(its upstream step ran) is recomputed, because its old output describes old input.

Each step reads the folder the previous enabled step wrote (set explicitly as its
`input_stage`), so a leftover folder from an older config (say `edu-2/`) is never
picked up by accident.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from shammie.jobs.config import JobConfig, is_example_input, sections, stage_names
from shammie.pipeline import jobdir, lineage, registry, storage
from shammie.pipeline.runner import RunOptions, check_output_writable, run_stage
from shammie.pipeline.stage import Stage

RUN_SECTION = "run"
JOB_CONFIG_FILE = "job.yaml"


@dataclass
class Step:
    name: str            # stats.json section / display name
    section: str         # config block it comes from
    stage: Stage = field(repr=False)
    input_stage: str | None

    @property
    def folder(self) -> str:
        return self.stage.output_url()

    @property
    def done(self) -> bool:
        return storage.exists(storage.join(self.stage.bookkeeping_url(), jobdir.SUCCESS))


def plan(config: JobConfig) -> list[Step]:
    """The steps of the job, upstream first (disabled stages are left out): the job stages of the
    registry (`pipeline/registry.py`), each step reading the folder the previous one wrote."""
    job = config.output
    steps: list[Step] = []
    previous: str | None = None
    from_job = {"input": tuple(config["input"] or ()), "store": config.store}
    for name, section in sections().items():
        if not config.enabled(name):
            continue
        options_of = dict(zip((s.section for s in section.steps), config.options[name]))
        for spec in registry.subcommands()[name].steps:
            stage_cls = spec.stage_class()
            options = options_of[spec.section]
            values = {stage_cls.job_field: job, "input_stage": previous,
                      **{field_name: from_job[key] for field_name, key in spec.from_job.items()}}
            names = {f.name for f in dataclasses.fields(options)}
            stage = stage_cls(job, dataclasses.replace(options, **{k: v for k, v in values.items() if k in names}))
            steps.append(Step(spec.section, name, stage, spec.reads or previous))
            previous = stage.output_folder()
    return steps


def format_plan(config: JobConfig, steps: list[Step], *, ray_address: str | None = None) -> str:
    address = ray_address or config["ray_address"] or os.environ.get("RAY_ADDRESS")
    lines = [
        f"job {config['name']!r}" + (f" from {config.path}" if config.path else ""),
        f"  output:  {config.output}",
        f"  ray:     {address or 'embedded local Ray'}" + (f", {config['workers']} workers" if config["workers"] else ""),
    ]
    if config.overrides:
        lines.append(f"  --set:   {' '.join(config.overrides)}")
    lines.append("steps:")
    for i, step in enumerate(steps, 1):
        status = "done, skip if unchanged" if step.done else (
            "resume" if _has_task_markers(step) else "run")
        source = step.input_stage or "input"
        lines.append(f"  {i}. {step.name:<11} {source} -> {step.folder}  [{status}]")
        if step.section == "crawl":
            value = list(config["input"] or [])
            shown = [v + (" (generated on the first run)" if is_example_input(v) and not os.path.exists(v) else "")
                     for v in value[:5]]
            lines.append(f"       input: {len(value)} item(s): {', '.join(shown)}{' ...' if len(value) > 5 else ''}")
        for key, value in _shown_options(step).items():
            lines.append(f"       {key}: {value}")
        note = lineage_note(step)
        if note:
            lines.append(f"       note: {note}")
    disabled = [s for s in stage_names() if not config.enabled(s)]
    if disabled:
        lines.append(f"disabled: {', '.join(disabled)}")
    return "\n".join(lines)


def lineage_note(step: Step) -> str | None:
    """What a finished step was built from, when the plan would give it something else (its lineage)."""
    if not step.done:
        return None
    links = lineage.chain(step.stage.job, jobdir.read_stage_record(step.stage.bookkeeping_url()))
    if not links:
        return None
    read = links[-1]
    if step.input_stage and read.folder != step.input_stage:
        return (f"built from {read.folder}/, but the plan reads {step.input_stage}/ (stale: rebuilt when a step "
                "before it runs, else refused unless --overwrite)")
    if read.rebuilt_since_read:
        return (f"built from an earlier build of {read.folder}/ (stale: rebuilt when a step before it runs, "
                "else refused unless --overwrite)")
    return None


def _shown_options(step: Step) -> dict[str, Any]:
    """The step's options as the config set them (the job directory and input folder are shown above)."""
    from shammie.pipeline.options import to_mapping
    from shammie.pipeline.stage import RUN_ONLY_OPTIONS

    hidden = RUN_ONLY_OPTIONS | {step.stage.job_field, "inputs", "output" if step.section == "crawl" else ""}
    return {k: v for k, v in to_mapping(step.stage.options).items() if k not in hidden}


def _has_task_markers(step: Step) -> bool:
    return bool(storage.listdir(storage.join(step.stage.bookkeeping_url(), jobdir.TASKS)))


def dry_run_checks(config: JobConfig) -> None:
    """What --dry-run verifies besides the config: that the output can be written."""
    check_output_writable(config.output, create=False)


def run_job(config: JobConfig, *, ray_address: str | None = None, progress: bool = True, overwrite: bool = False,
            wait: bool = False, verify: bool = False, shared_filesystem: bool = False,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the job's steps in order; return {step name: stats}."""
    job = config.output
    check_output_writable(job, create=False)
    steps = plan(config)
    address = ray_address or config["ray_address"]
    shared = shared_filesystem or bool(config["shared_filesystem"])
    pending = [s for s in steps if not s.done]
    if pending:
        # Started here rather than by the first task so that a cluster that cannot be
        # reached fails before any step, and the log says where the job runs. Before the
        # job folder is created: init_ray checks an address in seconds (ray.init would
        # retry an unreachable one for minutes), and a failed start leaves nothing behind;
        # so is a local job folder on a cluster of several hosts (refused).
        from shammie.pipeline.ray_runtime import check_job_location, init_ray

        where = init_ray(address, num_cpus=config["workers"])
        check_job_location(job, address, shared_filesystem=shared)
    check_output_writable(job)
    storage.write_bytes_atomic(storage.join(job, JOB_CONFIG_FILE), config.to_yaml().encode())
    summary: dict[str, Any] = {}
    timings = jobdir.read_stats(job).get(RUN_SECTION, {}).get("steps", {})
    upstream_rewritten = False
    if pending:
        log(f"job {config['name']!r} on {where}: {len(pending)} of {len(steps)} steps to run -> {job}")
    else:
        log(f"job {config['name']!r}: every step is already complete in {job}; checking inputs and settings")
    for i, step in enumerate(steps, 1):
        log(f"[{i}/{len(steps)}] {step.name}: {step.input_stage or 'input'} -> {step.folder}")
        run = RunOptions(workers=config["workers"], ray_address=address, progress=progress,
                         overwrite=overwrite or upstream_rewritten, wait=wait, verify=verify,
                         shared_filesystem=shared)
        start = time.monotonic()
        result = run_stage(step.stage, run, log=log if progress else (lambda _m: None))
        seconds = time.monotonic() - start
        summary[step.name] = result.section
        if result.status == "complete":
            log(f"[{i}/{len(steps)}] {step.name}: complete, skipped")
            continue
        upstream_rewritten = True
        timings[step.name] = {"seconds": round(seconds, 3), "documents": result.section.get("documents")}
        jobdir.update_stats(job, RUN_SECTION, {"name": config["name"], "steps": timings})
        documents = result.section.get("documents")
        log(f"[{i}/{len(steps)}] {step.name}: done in {seconds:.1f} s"
            + (f", {documents} documents" if documents is not None else ""))
    return summary
