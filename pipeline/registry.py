"""The stage registry: every command and stage of Shammie, declared once, by name (as datatrove and
dolma register theirs).

One `Command` per `shammie` subcommand, in pipeline order. A command that is a stage of a job
declares its `Step`s (a stats.json section and the `Stage` class that writes it; `edu` has two:
score, then subset) and its section of a job config. Everything that used to list the stages by
hand is generated from this table:

- `jobs/cli.py`: the subcommands and their one-line help (`subcommands()`);
- `jobs/config.py`: the YAML sections, their defaults and keys (`job_commands()`);
- `jobs/runner.py` `plan()`: the steps of a job, upstream first (`job_commands()`);
- `pipeline/jobdir.py`: the order of the document folders (`DOCUMENT_FOLDERS`, `SUBSET_PREFIXES`);
- `jobs/report.py`: the stats sections it reads (`sections()`) and, with `mixing/export.py`'s
  dataset card, the filter funnel (`funnel()`), whose rows come from each stage's own `funnel`.

Why the table holds strings ("module:Class") instead of classes: this module is infrastructure
(layer 0, `docs/architecture.md`), below the stages it names, so it may not import them; and
`shammie --help` must stay fast, so no stage module is imported before a command or a job needs
it. `load()` imports a named object when it is used (`importlib`, the way `jobs/cli.py` always
loaded its subcommands); `tests/test_registry.py` checks every name resolves.

Adding a stage: its module (options dataclass + `Stage` subclass, optionally a `funnel`
classmethod), a CLI module, and one `Command(...)` in `COMMANDS` (or `register(...)`, which a
plugin or a test calls).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

# The fields of a chained step the job sets itself: the job directory and the folder it reads.
CHAINED: Mapping[str, Any] = {"job": "", "input_stage": None}


@dataclass(frozen=True)
class Step:
    """One step of a job: one stats.json section, written by one stage class."""

    section: str                              # stats.json section (the stage's `name`)
    stage: str                                # "module:Class" of the `Stage` subclass
    folder: str | None = None                 # the document folder it writes (its place in the folder order)
    subset_prefixes: tuple[str, ...] = ()     # or: the prefixes of the subset folders it writes (edu-3/)
    fixed: Mapping[str, Any] = field(default_factory=lambda: dict(CHAINED))  # options the job sets itself
    keys: tuple[str, ...] | None = None       # its keys of the command's config section (None: the rest)
    from_job: Mapping[str, str] = field(default_factory=dict)  # option <- the job's value ("inputs" <- "input")
    reads: str | None = None                  # the folder it reads in a job, when not the previous step's
    helps: str | None = None                  # "module:NAME" of a dict option -> help for this command

    def stage_class(self) -> type:
        return load(self.stage)


@dataclass(frozen=True)
class Command:
    """One `shammie` subcommand; with `steps`, a stage of jobs (a section of the YAML config)."""

    name: str                                 # `shammie NAME`, and the job config's section
    cli: str                                  # module with add_arguments(parser) and run(args) -> int
    help: str                                 # one line: `shammie --help`
    steps: tuple[Step, ...] = ()
    in_jobs: bool = True                      # a section of job configs (when it has steps)
    enabled: bool = False                     # on by default in a job config
    config_help: str = ""                     # the section's one line in docs/options.md

    @property
    def is_job_stage(self) -> bool:
        return bool(self.steps) and self.in_jobs


_SCORING = "shammie.filters.scoring"

COMMANDS: list[Command] = [
    Command("crawl", "shammie.filters.crawl_cli", "WARC files -> FineWeb-filtered text (documents/)",
            (Step("crawl", "shammie.filters.crawl:CrawlStage", folder="documents",
                  fixed={"inputs": (), "output": ""}, from_job={"inputs": "input"}),),
            enabled=True, config_help="WARC -> documents/ (`shammie crawl`)"),
    Command("exact-dedup", "shammie.dedup.exact_cli", "exact-duplicate removal per snapshot (exact-deduped/)",
            (Step("exact_dedup", "shammie.dedup.exact:ExactDedupStage", folder="exact-deduped"),),
            # not a job step: `dedup` runs the same exact pass first (its `exact` option)
            in_jobs=False),
    Command("dedup", "shammie.dedup.cli", "MinHash near-duplicate removal per snapshot (deduped/)",
            (Step("dedup", "shammie.dedup.minhash:DedupStage", folder="deduped"),),
            enabled=True, config_help="documents/ -> deduped/ (`shammie dedup`)"),
    Command("decontaminate", "shammie.filters.decontaminate_cli",
            "remove documents sharing an n-gram with benchmark items (decontaminated/)",
            (Step("decontaminate", "shammie.filters.decontaminate:DecontaminateStage", folder="decontaminated"),),
            config_help="-> decontaminated/: benchmark n-gram overlap removed (`shammie decontaminate`)"),
    Command("classify", "shammie.filters.classify_cli", "DCLM-style fastText quality classifier: train, score",
            (Step("classify", f"{_SCORING}:ScoreStage", folder="classified",
                  fixed={**CHAINED, "kind": "quality", "backend": "fasttext"}, helps=f"{_SCORING}:QUALITY_SCORE_HELPS"),),
            config_help="-> classified/ (`shammie classify score`)"),
    Command("edu", "shammie.filters.edu_cli", "educational-quality scoring: annotate, train, score, subset",
            (Step("edu_score", f"{_SCORING}:ScoreStage", folder="scored",
                  fixed={**CHAINED, "kind": "edu", "output_stage": None}, helps=f"{_SCORING}:EDU_SCORE_HELPS"),
             Step("edu_subset", f"{_SCORING}:SubsetStage", subset_prefixes=("edu-", "subset-"),
                  fixed={**CHAINED, "output": None}, keys=("threshold",))),
            config_help="-> scored/ (`shammie edu score`), then edu-<threshold>/ (`shammie edu subset`)"),
    Command("shard", "shammie.mixing.shard_cli", "write the domain-grouped, tokenized shard store (store/)",
            (Step("shard", "shammie.mixing.shard_stage:ShardStage"),),
            enabled=True, config_help="-> the shard store (`shammie shard`)"),
    Command("export", "shammie.mixing.export_cli", "export a shard store for Megatron-LM/NeMo (.bin/.idx) or "
            "Hugging Face datasets (Parquet + card)",
            (Step("export", "shammie.mixing.export:ExportStage", fixed={"store": ""}, from_job={"store": "store"},
                  reads="store"),),
            config_help="the store -> Megatron .bin/.idx or a `datasets` folder (`shammie export`)"),
    Command("mix", "shammie.mixing.mix_cli", "online data mixing utilities (report)"),
    Command("run", "shammie.jobs.run_cli", "run a whole job from a YAML config (crawl -> shards)"),
    Command("report", "shammie.jobs.report_cli", "write report.html for a job directory"),
]


def load(name: str) -> Any:
    """The object a "module:attribute" string names (the module is imported now, not before)."""
    module, _, attribute = name.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


def subcommands() -> dict[str, Command]:
    return {c.name: c for c in COMMANDS}


def job_commands() -> list[Command]:
    """The sections of a job config, in the order of a job's steps."""
    return [c for c in COMMANDS if c.is_job_stage]


def steps() -> Iterator[Step]:
    for command in COMMANDS:
        yield from command.steps


def sections() -> tuple[str, ...]:
    """Every stats.json section a stage writes, in pipeline order."""
    return tuple(step.section for step in steps())


def _document_folders() -> list[str]:
    return [step.folder for step in steps() if step.folder]


def _subset_prefixes() -> tuple[str, ...]:
    return tuple(p for step in steps() for p in step.subset_prefixes)


# The job's document folders, upstream first (`pipeline/jobdir.py` DOCUMENT_STAGES is this very list,
# kept in step with the table by `register`), and the prefixes of the subset folders after them.
DOCUMENT_FOLDERS: list[str] = _document_folders()
SUBSET_PREFIXES: tuple[str, ...] = _subset_prefixes()


def register(command: Command, *, after: str | None = None) -> None:
    """Add a command (a plugin's stage, a test's toy stage) after the command `after` (default: before
    the first command that is not a stage), or replace the command of the same name."""
    names = [c.name for c in COMMANDS]
    if command.name in names:
        COMMANDS[names.index(command.name)] = command
    else:
        where = names.index(after) + 1 if after is not None else next(
            (i for i, c in enumerate(COMMANDS) if not c.steps), len(COMMANDS))
        COMMANDS.insert(where, command)
    _refresh()


def unregister(name: str) -> None:
    COMMANDS[:] = [c for c in COMMANDS if c.name != name]
    _refresh()


def _refresh() -> None:
    DOCUMENT_FOLDERS[:] = _document_folders()
    missing = [p for p in _subset_prefixes() if p not in SUBSET_PREFIXES]
    if missing:  # a tuple: jobdir holds the same object, so new prefixes are refused rather than silently lost
        raise ValueError(f"subset prefixes {missing} are not in {SUBSET_PREFIXES}; declare them in COMMANDS")


# ---------------------------------------------------------------- the funnel


def funnel(stats: Mapping[str, Any], included: Any = None,
           folders: Mapping[str, str] | None = None) -> list[tuple[str, int]]:
    """Documents left after each step, from a job's stats.json: the rows of each step's own
    `funnel(section, previous=, folder=)` classmethod, in pipeline order. Steps for which
    `included(section)` is false are left out (the report and the card pass the lineage of what
    they describe); `folders[section]` is the folder of that step the described output read (which
    subset, edu-2/ or edu-3/). A stage without a `funnel` adds no row (scoring keeps every document)."""
    rows: list[tuple[str, int]] = []
    for step in steps():
        section = stats.get(step.section)
        if not isinstance(section, dict) or not section or (included is not None and not included(step.section)):
            continue
        rows_of = getattr(step.stage_class(), "funnel", None)
        if rows_of is None:
            continue
        previous = rows[-1][1] if rows else None
        rows += [(label, int(value)) for label, value in
                 rows_of(section, previous=previous, folder=(folders or {}).get(step.section))]
    return rows
