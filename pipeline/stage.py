"""The stage abstraction: what one stage of a job declares, and nothing about how it is run.

A stage (crawl, dedup, score, subset, shard, ...) is a small class in the style of
datatrove's `PipelineStep` and NeMo Curator's `ProcessingStage`:

    class ExactDedup(Stage):
        name = "exact_dedup"                  # stats.json section, lock name, CLI command
        output = "exact-deduped"              # folder written inside the job
        Options = ExactDedupOptions           # one dataclass: CLI flags, YAML keys, docs table

        def settings(self) -> dict            # what the output depends on besides its inputs
        def resolve_inputs(self) -> list[InputFile]   # driver side, before any work
        def plan(self, inputs, out) -> list[Task]     # one task per input file
        def setup(self)                       # once per worker process: models, caches
        def run_task(self, payload, out) -> dict      # writes the task's outputs, returns its stats
        def summarize(self, results) -> dict  # the stats.json section

A multi-pass stage (dedup: hash, reduce, signatures, buckets, clusters, filter) also declares
`phases(ctx)`: `Phase` objects the runner runs one after the other, each planning its tasks
from the earlier phases' results (`ctx.done`); the last phase writes the stage's outputs and
its results go to `summarize`, with every phase's summary beside them (`results.phases`).
No stage overrides how phases are run, timed or resumed.

`pipeline.runner.run_stage` owns everything else, identically for every stage:
input fingerprints, the re-run policy, the per-job lock, task markers checked
against their outputs, `--overwrite` into a fresh folder, stats then `_SUCCESS`,
Ray and the progress bar. Most stages read the Parquet files of an upstream
document folder; `DocumentStage` gives them input resolution and one task per file.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError, StageRefused

# Options every stage shares; they change how a run goes, never what it writes,
# so they are left out of the settings the output is recorded with.
RUN_ONLY_OPTIONS = frozenset({"workers", "ray_address", "progress", "no_progress", "overwrite", "wait", "verify",
                              "shared_filesystem", "dry_run", "input_stage"})


@dataclass(frozen=True)
class InputFile:
    """One file a stage reads: its URL, the name its outputs are keyed by, and what identifies its content."""

    url: str
    name: str
    fingerprint: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    """One unit of work: `payload` goes to `Stage.run_task`; `outputs` are the file names
    (relative to the stage's output folder) it writes, checked against its marker on resume."""

    name: str
    payload: Any
    outputs: tuple[str, ...] = ()


FOLDER_SWAPPED = "folder swapped in whole"
SELF_PUBLISHED = "publishes itself atomically"


@dataclass(frozen=True)
class Phase:
    """One pass of a stage over its tasks, run by the runner after the phases before it.

    `plan(done)` lists the phase's tasks from what the earlier phases gave (`done`: phase name ->
    its summary, or its task results when it has no summary); `task(payload)` runs each on a Ray
    worker (None: the stage's own `run_task`, on a worker that ran `setup()` once); `summary(results)`
    runs in the driver once every task is done and returns what later phases and `summarize` see
    under this phase's name (a work file written by the driver, the cluster statistics, ...).

    `markers` is the folder (inside the stage's bookkeeping folder) of the phase's task markers:
    None for the phase that writes the stage's outputs (the stage's own `_tasks/`). Phases with the
    same `stats` name are timed together (dedup's connected-component rounds are one "clusters" phase).
    `on_driver` runs the tasks in the driver process, without Ray (with markers when `markers` is
    given): a task that writes where only the driver sees (the export folder), or a phase of one
    task that is not worth starting Ray for (a small store build). `count_key`: the result key the
    progress bar counts ("" for the stage's `progress_count_key`, None for none), `unit` what it counts
    (None for the stage's `progress_unit`): a phase that counts band keys or edges says so."""

    name: str
    plan: Callable[[dict[str, Any]], list["Task"]]
    task: Callable[[Any], dict] | None = None
    summary: Callable[[dict[str, dict]], Any] | None = None
    markers: str | None = None
    desc: str | None = None
    stats: str | None = None
    on_driver: bool = False
    count_key: str | None = ""
    unit: str | None = None

    @property
    def stats_name(self) -> str:
        return self.stats or self.name


class StepLabels:
    """Progress-bar labels numbered over every step of one run ("dedup 3/6 signatures"), so a run whose
    optional steps come first (dedup --exact's two exact passes) numbers all of them, not just the rest."""

    def __init__(self, prefix: str, steps: Iterable[str]):
        self.prefix, self.steps = prefix, list(steps)

    def __call__(self, step: str, detail: str = "") -> str:
        label = f"{self.prefix} {self.steps.index(step) + 1}/{len(self.steps)} {step}"
        return f"{label}: {detail}" if detail else label


class Results(dict):
    """Task name -> stats of the stage's last phase, as `summarize` gets them, with `phases`: every
    phase's name -> its summary (what `Phase.summary` returned) and `timings`: per timed phase
    its wall seconds, CPU seconds and task count (the runner's, as in the stats section; a phase's
    summary sees the timings of the phases before it as `ctx.timings`)."""

    def __init__(self, results: dict[str, dict] | None = None, phases: dict[str, Any] | None = None,
                 timings: dict[str, dict] | None = None):
        super().__init__(results or {})
        self.phases = dict(phases or {})
        self.timings = dict(timings or {})


class Stage:
    name: ClassVar[str] = ""
    output: ClassVar[str] = ""
    Options: ClassVar[type | None] = None
    # A grown input set (new WARC files for a crawl) adds tasks instead of being refused.
    grows: ClassVar[bool] = False
    num_cpus: ClassVar[float] = 1
    progress_unit: ClassVar[str] = "docs"
    progress_count_key: ClassVar[str] = "documents"
    # Names in the output folder the runner must keep although no task lists them.
    keep_files: ClassVar[tuple[str, ...]] = ()
    # The option that names the job directory (left out of the settings).
    job_field: ClassVar[str] = "job"
    # How the output becomes the complete one (pipeline/runner.py PUBLISHING): FOLDER_SWAPPED, the
    # runner's (tasks write into the folder, --overwrite into a fresh one swapped in whole, stale files
    # swept, _SUCCESS last), or SELF_PUBLISHED: the stage publishes atomically itself (the store's
    # manifest, the export's rename); the runner then records inputs, settings and stats but sweeps
    # nothing, and --overwrite is the stage's own atomic replacement.
    publishing: ClassVar[str] = FOLDER_SWAPPED

    def __init__(self, job: str, options: Any = None):
        self.job = job
        self.options = options if options is not None else (self.Options() if self.Options else None)

    # ------------------------------------------------------------ declared by each stage

    def output_folder(self) -> str:
        """The folder name inside the job (a stage whose name depends on its options overrides this)."""
        return self.output

    def output_url(self) -> str:
        """Where the output lives; inside the job unless the stage says otherwise (a store on s3://)."""
        return jobdir.stage_path(self.job, self.output_folder())

    def bookkeeping_url(self) -> str:
        """The folder of the runner's `_stage.json`, `_SUCCESS`, task markers and work files: JOB/_meta/<folder>/,
        so the output folder holds nothing but the stage's data files (loaders read it whole). A stage
        that publishes its own output (the store) keeps them in it."""
        if self.publishing == SELF_PUBLISHED:
            return self.output_url()
        return jobdir.meta_path(self.job, self.output_folder())

    def settings(self) -> dict[str, Any]:
        """What the output depends on besides its inputs; a change is refused (or --overwrite)."""
        if self.options is None:
            return {}
        values = dataclasses.asdict(self.options)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(values.items())
                if k not in RUN_ONLY_OPTIONS and k != self.job_field}

    def resolve_inputs(self) -> list[InputFile]:
        raise NotImplementedError

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        raise NotImplementedError

    def setup(self) -> None:
        """Load models and caches once per worker process (runs in the worker, not the driver)."""

    def run_task(self, payload: Any, out: str) -> dict[str, Any]:
        raise NotImplementedError

    def phases(self, ctx) -> Iterable[Phase]:
        """The passes of the stage, in order (the runner asks for the next one once the previous one is
        done, so a generator may decide on later phases from `ctx.done`: dedup's component rounds).
        By default one phase: `run_task` over the planned tasks (`ctx.tasks`)."""
        yield Phase(self.name, plan=lambda done: ctx.tasks)

    # A folder inside the bookkeeping folder holding the phases' work files (shuffle files,
    # an index), removed by the runner once the last phase is done unless `keep_work()`.
    work: ClassVar[str | None] = None

    def keep_work(self) -> bool:
        return False

    def summarize(self, results: dict[str, dict]) -> dict[str, Any]:
        documents = sum(int(r.get("documents", 0) or 0) for r in results.values())
        return {"documents": documents, "files": len(results)}

    def describe(self, section: dict[str, Any]) -> str:
        """The CLI's closing summary."""
        return f"{self.name}: {section.get('documents', 0)} documents in {section.get('files', 0)} file(s)"

    def read_section(self) -> dict[str, Any] | None:
        """The stats section this stage last recorded (what a re-run that finds its output complete reports)."""
        section = jobdir.read_stats(self.job).get(self.name)
        return section if isinstance(section, dict) else None

    def record_section(self, section: dict[str, Any]) -> None:
        """Record the stats section in the job's stats.json (a stage whose output can live outside the job,
        the store, keeps it with the output and tells the job only about its own)."""
        jobdir.update_stats(self.job, self.name, section)



def parquet_outputs_of(job: str, folder: str) -> list[InputFile]:
    """The Parquet files of a complete document folder, as recorded in its `_SUCCESS`.

    The fingerprint of each file is the size and checksum its writer recorded, so a
    downstream stage notices a re-made upstream file without reading it. A folder
    whose `_SUCCESS` predates output manifests (or was made by hand) is listed and
    each file's schema is checked instead."""
    folder_url = jobdir.stage_path(job, folder)
    marker_path = jobdir.completion_marker_path(job, folder)
    marker = storage.read_json(marker_path)
    if marker is None:
        raise StageRefused(f"{folder_url} is not complete (no {jobdir.SUCCESS}); run the stage that writes it first")
    if not isinstance(marker, dict):
        raise InputError(f"{marker_path} is not a JSON object; re-run the stage that writes {folder}/")
    recorded = marker.get("outputs")
    present = {name: size for name, size in storage.list_sizes(folder_url).items()}
    if isinstance(recorded, dict):
        files = []
        for name, fp in sorted(recorded.items()):
            if not name.endswith(".parquet"):
                continue
            if name not in present:
                raise InputError(f"{storage.join(folder_url, name)} is listed in {jobdir.META}/{folder}/{jobdir.SUCCESS} but missing; "
                                 f"re-run the stage that writes {folder}/ to redo it")
            if fp.get("size") is not None and present[name] != fp["size"]:
                raise InputError(f"{storage.join(folder_url, name)} has {present[name]} bytes but was written with "
                                 f"{fp['size']}; it was changed or damaged: re-run the stage that writes {folder}/")
            files.append(InputFile(storage.join(folder_url, name), name, dict(fp)))
        return files
    files = []
    for name in sorted(present):
        if name.endswith(".parquet") and not name.startswith((".", "_")):
            url = storage.join(folder_url, name)
            check_document_file(url)
            files.append(InputFile(url, name, {"size": present[name]}))
    return files


def check_document_file(url: str, required: tuple[str, ...] = ("id", "text")) -> None:
    """Fail with the file's name when it is not a readable Parquet document table."""
    import pyarrow.parquet as pq

    fs, path = storage.get_fs(url)
    try:
        with fs.open(path, "rb") as f:
            names = pq.read_schema(f).names
    except Exception as e:
        raise InputError(f"{url} is not a readable Parquet file ({type(e).__name__}: {e})") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"{url} has no {', '.join(missing)} column (columns: {', '.join(names)}); "
                         "it is not a Shammie document file")


def read_documents(url: str, columns: list[str] | None = None):
    """Read one document Parquet file; a damaged file is an InputError naming it, not a pyarrow traceback."""
    from shammie.pipeline import documents

    try:
        table = documents.read_table(url, columns=None)
    except Exception as e:
        raise InputError(f"{url} is not a readable Parquet file ({type(e).__name__}: {e})") from None
    if columns:
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise InputError(f"{url} has no {', '.join(missing)} column (columns: {', '.join(table.column_names)})")
        table = table.select(columns)
    return table


class DocumentStage(Stage):
    """A stage that reads the Parquet files of one document folder and writes one file per input file."""

    # Where a stage reads by default: the most downstream complete document folder upstream of its output.
    def input_stage(self) -> str:
        requested = getattr(self.options, "input_stage", None)
        out = self.output_folder()
        source = jobdir.resolve_input_stage(self.job, requested, before=out)
        if source == out:
            raise StageRefused(f"{self.name} cannot read its own output folder {out}/")
        return source if requested else self.keep_recorded_input(source, before=out)

    def keep_recorded_input(self, default: str, before: str | None = None) -> str:
        """The folder an existing output was built from, when it is still complete, instead of `default`.

        An optional step run later (exact-dedup after dedup, decontaminate after edu score) adds a
        complete folder further downstream; the output built from the earlier folder still describes
        its input, so it stays valid (resumed or reported complete), with a note saying how to rebuild
        it from the newer folder, instead of being refused as changed. An explicit --input-stage is
        always taken as it is."""
        record = jobdir.read_stage_record(self.bookkeeping_url())
        recorded = ((record or {}).get("settings") or {}).get("input_stage")
        if not isinstance(recorded, str) or recorded == default or not jobdir.is_complete(self.job, recorded):
            return default
        order = jobdir.DOCUMENT_STAGES + jobdir.subset_stages(self.job)
        if before in order and (recorded not in order or order.index(recorded) >= order.index(before)):
            return default
        if getattr(self, "_noted_input", None) != recorded:
            self._noted_input = recorded
            # true with and without --overwrite (which rebuilds from the recorded folder too)
            print(f"note: {self.output_folder()}/ was built from {recorded}/, which is still complete; "
                  f"{default}/ was written since. {self.output_folder()}/ keeps reading {recorded}/; pass "
                  f"--input-stage {default} --overwrite to rebuild it from {default}/", file=sys.stderr, flush=True)
        return recorded

    def resolve_inputs(self) -> list[InputFile]:
        if not storage.exists(self.job):
            raise InputError(f"job directory {self.job} does not exist")
        source = self.input_stage()
        files = parquet_outputs_of(self.job, source)
        rows = [f.fingerprint.get("rows") for f in files]
        if files and all(r == 0 for r in rows):
            raise InputError(f"{jobdir.stage_path(self.job, source)} holds no documents (0 rows in {len(files)} "
                             f"file(s)); there is nothing for {self.name} to do")
        return files

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        return [Task(i.name.removesuffix(".parquet"), {"input": i.url, "output": storage.join(out, i.name)},
                     (i.name,)) for i in inputs]

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "input_stage": self.input_stage()}
