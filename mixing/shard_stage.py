"""The shard stage on the stage runner: a job's documents -> the domain-grouped, tokenized store.

The store publishes itself atomically (shards under new names, `manifest.json` last,
earlier builds kept for pinned readers; `mixing/store_build.py`), so the runner keeps
its hands off the store's files (`publishing = SELF_PUBLISHED`): --overwrite is a new build that
replaces the published one when its manifest lands. The build's passes (count/reduce,
tokenize, merge, publish) are the stage's declared phases (`store_build.StoreBuild`), run,
resumed and timed by the runner like any stage's. What the runner adds is what every
stage gets: the per-job lock, inputs taken from the upstream `_SUCCESS` (a missing or
damaged file is named, an empty input refused before a tokenizer is trained on
nothing), the record of inputs and settings (changed ones refused without --overwrite),
and the stats section, which the store keeps in its own `_SUCCESS`; the job's
stats.json gets it only for the job's own store (`store_build.owns_job_stats`).

`build_store` (also `shammie.mixing.store.build_store`) runs the same phases for a Python
caller, without the job's record and lock: other settings make a new build instead of
being refused, as a library call should.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from shammie.mixing import domains as dom
from shammie.mixing import store_format as fmt
from shammie.mixing.store_build import (MIN_TASKS, TASK_BYTES, StoreBuild, check_store_folder, read_store_stats,
                                        record_stats)
from shammie.mixing.store_writer import DEFAULT_SHARD_TOKENS
from shammie.mixing.tokenizer import DEFAULT_SAMPLE_BYTES
from shammie.pipeline import jobdir, storage
from shammie.pipeline.errors import InputError
from shammie.pipeline.options import option
from shammie.pipeline.runner import RunOptions, StageContext, run_phases
from shammie.pipeline.stage import SELF_PUBLISHED, DocumentStage, InputFile, Phase, Results, Task

GROUP_BY_HELP = ("domain of each document: edu (edu_int_score bucket), language, site (registered domain of "
                 "the URL, top-K + 'other'), or any other metadata column (default: edu when the input has edu "
                 "scores, else site)")


@dataclass(frozen=True)
class ShardOptions:
    job: str = option(help="job directory (local path or s3://...)", kind="output", positional=True, metavar="DIR",
                      yaml=False)
    store: str | None = option(None, help="where to write the store (path or s3://); default DIR/store",
                               kind="output")
    group_by: str | None = option(None, help=GROUP_BY_HELP, metavar="KEY")
    top_k: int | None = option(None, help="keep the K largest domains and fold the rest into 'other' (default: 100 "
                               "for site, no folding otherwise)", minimum=1, metavar="K")
    tokenizer: str | None = option(None, help="sentencepiece .model to use (it must define an end-of-sentence "
                                   "piece)", kind="path", must_exist=True, metavar="MODEL")
    train_tokenizer: int | None = option(None, help="train a sentencepiece model with this vocabulary size on a "
                                         "sample of the input and save it in the store (default when neither is "
                                         "given: reuse the store's tokenizer, or train 32000)", minimum=300,
                                         metavar="VOCAB")
    tokenizer_type: str = option("bpe", help="model type for --train-tokenizer", choices=("bpe", "unigram"))
    tokenizer_sample_mb: float = option(DEFAULT_SAMPLE_BYTES / 1e6, help="megabytes of input text to train the "
                                        "tokenizer on", minimum=0.001, metavar="MB")
    seq_len: int = option(fmt.DEFAULT_SEQ_LEN, help="default packed sequence length recorded in the manifest (readers "
                          "may pick another)", minimum=1, metavar="L")
    shard_tokens: int = option(DEFAULT_SHARD_TOKENS, help="start a new shard of a domain after about this many "
                               "tokens", minimum=1, metavar="N")
    keep_builds: int = option(fmt.DEFAULT_KEEP_BUILDS, help="published builds whose files are kept, this one "
                              "included (readers pinned to an older build keep working through keep_builds - 1 "
                              "rebuilds)", minimum=1, metavar="N")
    input_stage: str | None = option(None, help="document folder to read (default: the most downstream complete "
                                     "one)", metavar="STAGE")
    rehydrate: bool = option(False, help="repeat each document by its duplicate cluster's size as FineWeb-2 does "
                             "(the minhash_cluster_size column `shammie dedup` writes: 2-4 copies 2-3x, 5-99 5x, "
                             "100-999 8x, 1000+ once)")

    def check_options(self):
        if self.tokenizer and self.train_tokenizer:
            yield "train_tokenizer", "set either tokenizer or train_tokenizer, not both"


class ShardStage(DocumentStage):
    """Group documents into domains, tokenize them with sentencepiece and write STORE/manifest.json plus, per
domain, Parquet text shards and memory-mappable token shards. Ray tasks count the domain keys, tokenize and
write the shards; the driver writes the manifest. Shards get new names on every build and the manifest is
replaced last, so readers never see a half-written store; an interrupted run resumes its finished tasks
when re-run, and --overwrite builds the store afresh. --store must be a new or empty folder or a store."""

    name = "shard"
    output = jobdir.STORE
    Options = ShardOptions
    publishing = SELF_PUBLISHED

    def __init__(self, job: str, options: ShardOptions | None = None, *, task_bytes: int = TASK_BYTES,
                 min_tasks: int = MIN_TASKS):
        super().__init__(job, options)
        # how input files are grouped into tokenize tasks (tests make many small ones)
        self.task_bytes, self.min_tasks = task_bytes, min_tasks

    def output_url(self) -> str:
        return self.options.store or storage.join(self.job, jobdir.STORE)

    def input_stage(self) -> str:
        # Any complete document folder may feed the store, subsets included (the most downstream one).
        source = jobdir.resolve_input_stage(self.job, self.options.input_stage)
        return source if self.options.input_stage else self.keep_recorded_input(source)

    def resolve_inputs(self) -> list[InputFile]:
        import pyarrow.parquet as pq

        check_store_folder(self.output_url())  # before the runner writes its record into it
        files = super().resolve_inputs()
        fs, path = storage.get_fs(files[0].url)
        with fs.open(path, "rb") as f:
            names = pq.read_schema(f).names
        self._columns = names
        dom.check_group_by(self.group_by(), names)
        if self.options.rehydrate and "minhash_cluster_size" not in names:
            raise InputError(f"--rehydrate: {files[0].url} has no minhash_cluster_size column (it is written by "
                             "`shammie dedup`); shard a folder at or after deduped/, deduplicated by this Shammie")
        if all(f.fingerprint.get("rows") is None for f in files):  # an older _SUCCESS without row counts
            rows = 0
            for f in files:
                fs, path = storage.get_fs(f.url)
                with fs.open(path, "rb") as fh:
                    rows += pq.read_metadata(fh).num_rows
            if rows == 0:
                raise InputError(f"{jobdir.stage_path(self.job, self.input_stage())} holds no documents; "
                                 "there is nothing to tokenize")
        return files

    def group_by(self) -> str:
        """--group-by, or by default edu when the input has edu scores (a job that ran `edu score`), else site:
        a default that works on every job instead of failing on one without an edu step."""
        if self.options.group_by:
            return self.options.group_by
        columns = getattr(self, "_columns", None)
        if columns is None:
            import pyarrow.parquet as pq

            first = (jobdir.stage_files(self.job, self.input_stage()) or [None])[0]
            if first is None:
                return "site"
            fs, path = storage.get_fs(first)
            with fs.open(path, "rb") as f:
                columns = self._columns = pq.read_schema(f).names
        return "edu" if {"edu_int_score", "edu_score"} & set(columns) else "site"

    def settings(self) -> dict[str, Any]:
        values = super().settings()
        values["group_by"] = self.group_by()
        values.pop("store", None)
        values.pop("keep_builds", None)  # retention, not content
        return values

    def plan(self, inputs: list[InputFile], out: str) -> list[Task]:
        # What the build reads (its phases plan their own tasks from it): no task writes a runner-checked output.
        return [Task("store", {"files": [i.url for i in inputs], "fingerprints": [i.fingerprint for i in inputs]})]

    def phases(self, ctx) -> Iterator[Phase]:
        o, run, payload = self.options, ctx.run, ctx.tasks[0].payload
        build = StoreBuild(
            self.job, self.output_url(), group_by=self.group_by(), tokenizer=o.tokenizer,
            train_tokenizer=o.train_tokenizer, tokenizer_type=o.tokenizer_type, seq_len=o.seq_len, top_k=o.top_k,
            input_stage=payload.get("input_stage") or self.input_stage(), files=payload["files"],
            fingerprints=payload["fingerprints"], workers=run.workers, ray_address=run.ray_address,
            progress=run.progress, shard_tokens=o.shard_tokens, tokenizer_sample_bytes=int(o.tokenizer_sample_mb * 1e6),
            keep_builds=o.keep_builds, overwrite=run.overwrite, task_bytes=self.task_bytes, min_tasks=self.min_tasks,
            rehydrate=o.rehydrate)
        return build.phases(ctx)

    def read_section(self) -> dict[str, Any] | None:
        return read_store_stats(self.output_url())

    def record_section(self, section: dict[str, Any]) -> None:
        record_stats(self.job, self.output_url(), section)

    def summarize(self, results: Results) -> dict[str, Any]:
        return dict(results.phases["publish"])

    @classmethod
    def funnel(cls, section: dict, *, previous: int | None = None, folder: str | None = None) -> list[tuple[str, int]]:
        """Its row of the job's filter funnel (the report's; the dataset card counts the exported store)."""
        return [("in the store", int(section["documents"]))] if section.get("documents") is not None else []

    def describe(self, section: dict[str, Any]) -> str:
        tokenizer = section["tokenizer"]
        vocab = str(tokenizer["vocab_size"])
        if tokenizer.get("vocab_asked") and tokenizer["vocab_asked"] != tokenizer["vocab_size"]:
            vocab += f" of {tokenizer['vocab_asked']} asked"
        store = jobdir.recorded_place(self.job, section["store"])   # recorded relative to the job: where it is now
        lines = [f"store {store}: {section['documents']} documents, {section['tokens']} tokens in "
                 f"{len(section['domains'])} domains (group-by {section['group_by']}, input {section['input_stage']}, "
                 f"vocab {vocab}, {section['token_dtype']})"]
        width = max((len(d) for d in section["domains"]), default=6)
        lines.append(f"  {'domain':<{width}}  {'documents':>10}  {'tokens':>13}")
        for name, d in section["domains"].items():
            lines.append(f"  {name:<{width}}  {d['documents']:>10}  {d['tokens']:>13}")
        lines.append(f"{section['seconds']:.1f} s, {section['tokens_per_s'] / 1e6:.2f}M tokens/s")
        return "\n".join(lines)


def build_store(job: str, store: str | None = None, *, group_by: str = "edu", tokenizer: str | None = None,
                train_tokenizer: int | None = None, tokenizer_type: str = "bpe", seq_len: int = fmt.DEFAULT_SEQ_LEN,
                top_k: int | None = None, input_stage: str | None = None, workers: int | None = None,
                ray_address: str | None = None, progress: bool = True, shard_tokens: int = DEFAULT_SHARD_TOKENS,
                tokenizer_sample_bytes: int = DEFAULT_SAMPLE_BYTES, keep_builds: int = fmt.DEFAULT_KEEP_BUILDS,
                input_files: list[str] | None = None, input_fingerprints: list[dict] | None = None,
                overwrite: bool = False, task_bytes: int = TASK_BYTES, min_tasks: int = MIN_TASKS,
                rehydrate: bool = False) -> dict[str, Any]:
    """Build (or rebuild) the shard store of `job` at `store` (default `<job>/store`); return the stats.

    The shard stage's phases, run without the job's record and lock. `keep_builds`: how many published
    builds keep their files (this one included), so that readers pinned to an older build keep working
    through `keep_builds - 1` rebuilds. `overwrite`: build afresh even when the published build was made
    from the same inputs and settings. `input_files`/`input_fingerprints`: the inputs (default: the input
    stage's `_SUCCESS`). `rehydrate`: each document repeated by its `minhash_cluster_size` as FineWeb-2
    does (the tokenize tasks repeat rows: nothing per document reaches the driver)."""
    options = ShardOptions(job=job, store=store, group_by=group_by, top_k=top_k, tokenizer=tokenizer,
                           train_tokenizer=train_tokenizer, tokenizer_type=tokenizer_type,
                           tokenizer_sample_mb=tokenizer_sample_bytes / 1e6, seq_len=seq_len,
                           shard_tokens=shard_tokens, keep_builds=keep_builds, input_stage=input_stage,
                           rehydrate=rehydrate)
    stage = ShardStage(job, options, task_bytes=task_bytes, min_tasks=min_tasks)
    source = jobdir.resolve_input_stage(job, input_stage)
    task = Task("store", {"files": input_files, "fingerprints": input_fingerprints, "input_stage": source})
    run = RunOptions(workers=workers, ray_address=ray_address, progress=progress, overwrite=overwrite)
    out = stage.output_url()
    # A library call: where its store lives is the caller's business (the shard command checks it).
    ctx = StageContext(stage, run, out, [task], {}, books=out, check_location=False)
    stats = stage.summarize(run_phases(stage, ctx))
    record_stats(job, out, stats, in_store=not stats.get("up_to_date"))   # an up-to-date store stays untouched
    return stats
