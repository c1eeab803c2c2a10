"""The stage registry (issue 24, item 2): one table (`pipeline/registry.py`) from which the command
line, the job config's sections, the job plan, the folder order and the report are generated.

A toy stage (tests/toy_stage.py: one module, plus its registration) becomes a command, a YAML
section, a step of `shammie run` (dry run and real run), a folder that the stages after it read,
and rows of the report; and a complete `classified/` folder is read where docs/edu.md says."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import toy_stage
from shammie.jobs.cli import main, subcommands
from shammie.jobs.config import load_config, options_doc, stage_names
from shammie.jobs.report import write_report
from shammie.jobs.runner import plan
from shammie.pipeline import documents, jobdir, registry
from shammie.pipeline.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy():
    registry.register(toy_stage.COMMAND, after=toy_stage.AFTER)
    try:
        yield toy_stage
    finally:
        registry.unregister("toy")


def write_documents(job: Path, folder: str, texts: list[str]) -> None:
    (job / folder).mkdir(parents=True)
    rows = [{"id": f"<urn:{folder}:{i}>", "text": t, "url": f"http://example.org/{i}", "dump": "CC-MAIN-2024-22",
             "date": "2024-05-01T00:00:00Z", "language": "en", "language_score": 0.9, "warc_file": "w.warc.gz",
             "warc_offset": i} for i, t in enumerate(texts)]
    documents.write_table(pa.Table.from_pylist(rows, schema=documents.DOCUMENT_SCHEMA),
                          str(job / folder / "part-0.parquet"))
    jobdir.mark_complete(str(job), folder)


# ---------------------------------------------------------------- the table itself


def test_every_name_in_the_table_resolves_and_each_step_is_its_stages_stats_section():
    from shammie.filters.scoring import SCORER_KINDS

    for command in registry.COMMANDS:
        module = importlib.import_module(command.cli)
        assert callable(module.add_arguments) and callable(module.run), command.name
        for step in command.steps:
            cls = step.stage_class()
            assert cls.Options is not None, step.section
            # ScoreStage's section depends on the kind the job fixes (classify / edu_score)
            name = cls.name or SCORER_KINDS[step.fixed["kind"]].section
            assert name == step.section
            if step.helps:
                assert isinstance(registry.load(step.helps), dict)


def test_the_lists_that_were_written_by_hand_now_come_from_the_table():
    assert list(subcommands()) == [c.name for c in registry.COMMANDS]
    assert jobdir.DOCUMENT_STAGES == ["documents", "exact-deduped", "deduped", "decontaminated", "classified",
                                      "scored"]
    assert jobdir.SUBSET_PREFIXES == ("edu-", "subset-")
    assert stage_names() == ["crawl", "dedup", "decontaminate", "classify", "edu", "shard", "export"]
    assert registry.sections() == ("crawl", "exact_dedup", "dedup", "decontaminate", "classify", "edu_score",
                                   "edu_subset", "shard", "export")


def test_shammie_help_imports_no_stage_module():
    """The table names modules as strings: `shammie --help` imports none of the stages."""
    code = ("import sys; from shammie.jobs.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m.startswith(('shammie.dedup', 'shammie.filters', "
            "'shammie.mixing', 'shammie.filters.crawl'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "crawl" in out and "exact-dedup" in out  # the help lists the commands
    assert out.strip().endswith("LOADED []")


# ---------------------------------------------------------------- a toy stage, added in one module


def test_a_registered_stage_is_a_command_with_its_options_and_help(toy, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["toy", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "Keep the documents of at least --min-words words" in out
    assert "--min-words" in out and "--input-stage" in out and "--overwrite" in out  # its options and the runner's
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "a toy stage: keep the documents of at least N words" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["tyo", "x"])
    assert exit_.value.code == 2 and "did you mean toy?" in capsys.readouterr().err


def test_a_registered_stage_is_a_yaml_section_and_a_step_of_the_plan(toy, tmp_path, capsys):
    (tmp_path / "warc").mkdir()
    config_path = tmp_path / "job.yaml"
    config_path.write_text("input: [warc]\noutput: out\ntoy:\n  enabled: true\n  min_words: 5\n")
    steps = plan(load_config(str(config_path)))
    assert [s.name for s in steps] == ["crawl", "dedup", "toy", "shard"]
    assert steps[2].input_stage == "deduped" and steps[2].stage.options.min_words == 5
    assert steps[3].input_stage == "toyed"  # the step after it reads its folder
    assert main(["run", str(config_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"3\. toy\s+deduped -> \S+/out/toyed", out) and "min_words: 5" in out
    assert re.search(r"4\. shard\s+toyed -> ", out)
    # its keys are checked like every section's, and it is in docs/options.md's tables
    config_path.write_text("input: [warc]\noutput: out\ntoy:\n  enabled: true\n  min_wrds: 5\n")
    with pytest.raises(UserError, match=r"toy\.min_wrds: unknown key \(did you mean toy\.min_words\?\)"):
        load_config(str(config_path))
    assert "### `toy` (-> toyed/ (`shammie toy`))" in options_doc() and "`toy.min_words`" in options_doc()


def test_an_unregistered_stage_is_nowhere(toy):
    registry.unregister("toy")
    assert "toy" not in subcommands() and "toyed" not in jobdir.DOCUMENT_STAGES and "toy" not in stage_names()
    registry.register(toy_stage.COMMAND, after=toy_stage.AFTER)  # for the fixture's clean-up


def test_a_registered_stage_runs_in_a_job_is_read_downstream_and_is_in_the_report(toy, tmp_path, ray_session):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(toy_stage)  # Ray's workers do not have tests/ on their path
    try:
        job = tmp_path / "job"
        write_documents(job, "documents", ["one two", "one two three four", "a b c d e f", "x"])
        jobdir.update_stats(str(job), "crawl", {"records_read": 6, "html_responses": 5, "kept": 4, "documents": 4,
                                                "dropped": {"language": 1}, "filter_order": ["language"]})
        config_path = tmp_path / "job.yaml"
        config_path.write_text(textwrap.dedent(f"""
            output: {job}
            workers: 1
            crawl: {{enabled: false}}
            dedup: {{enabled: false}}
            shard: {{enabled: false}}
            toy: {{enabled: true, min_words: 4}}
        """))
        assert main(["run", str(config_path), "--no-progress"]) == 0
    finally:
        ray.cloudpickle.unregister_pickle_by_value(toy_stage)
    assert jobdir.is_complete(str(job), "toyed")
    kept = pq.read_table(job / "toyed" / "part-0.parquet").column("text").to_pylist()
    assert kept == ["one two three four", "a b c d e f"]
    section = json.loads((job / "stats.json").read_text())["toy"]
    assert section["documents"] == 2 and section["seconds"] > 0
    # its place in the folder order: the default input of every stage after it, never of one before it
    assert jobdir.resolve_input_stage(str(job)) == "toyed"
    assert jobdir.resolve_input_stage(str(job), before="decontaminated") == "toyed"
    assert jobdir.resolve_input_stage(str(job), before="toyed") == "documents"
    # the report: its funnel row (from ToyStage.funnel) along the lineage, and its time
    _, plots = write_report(str(job))
    funnel = dict(next(p for p in plots if p.key == "funnel").table)
    assert funnel["kept by the crawl"] == 4 and funnel["after the toy filter"] == 2
    assert "toy" in dict(next(p for p in plots if p.key == "throughput").table)
    html = (job / "report.html").read_text()
    assert "after the toy filter" in html and "toyed/" in html


# ---------------------------------------------------------------- classified/ (docs/edu.md)


def test_a_complete_classified_folder_is_read_where_documented(tmp_path):
    """docs/edu.md: `classify score` reads the most downstream folder before classified/; `edu score` then
    reads classified/, and so does the store (the most downstream complete folder)."""
    from shammie.filters.decontaminate import DecontaminateOptions, DecontaminateStage
    from shammie.filters.scoring import ScoreOptions, ScoreStage
    from shammie.mixing.shard_stage import ShardOptions, ShardStage

    job = tmp_path / "job"
    write_documents(job, "documents", ["a b c"])
    write_documents(job, "deduped", ["a b c"])
    write_documents(job, "classified", ["a b c"])
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    j = str(job)
    assert jobdir.resolve_input_stage(j) == "classified"
    assert ScoreStage(j, ScoreOptions(job=j, model=str(model), kind="edu")).input_stage() == "classified"
    assert ScoreStage(j, ScoreOptions(job=j, model=str(model), kind="quality")).input_stage() == "deduped"
    assert ShardStage(j, ShardOptions(job=j)).input_stage() == "classified"
    assert DecontaminateStage(j, DecontaminateOptions(job=j, against=("x.txt",))).input_stage() == "deduped"


def test_the_report_and_the_dataset_card_give_the_same_funnel_rows(tmp_path):
    """Both take each stage's rows from its `funnel` (before: written twice, in two wordings)."""
    from shammie.mixing.export import job_funnel
    from test_report import CRAWL, DEDUP, EDU_SUBSET, SHARD, make_job

    dedup = {**DEDUP, "exact_removed": 1, "near_removed": 2}
    job = make_job(tmp_path, {"crawl": CRAWL, "dedup": dedup, "edu_subset": EDU_SUBSET, "shard": SHARD})
    _, plots = write_report(str(job))
    report_rows = [row for row in next(p for p in plots if p.key == "funnel").table
                   if not row[0].startswith(("dropped:", "error:", "drop reason:"))]
    card_rows, _, _ = job_funnel({"input": {"job": str(job)}})
    assert card_rows == report_rows[:-1] and report_rows[-1] == ("in the store", 4)  # the card counts its own
    assert [label for label, _ in card_rows] == [
        "WARC records read", "HTML pages", "after no text extracted", "after language", "after Gopher quality",
        "kept by the crawl", "after exact duplicates", "after near-duplicates", "after dedup", "edu >= 3"]
