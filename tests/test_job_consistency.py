"""One coherent job (issue 24): what a job's outputs say about each other and about what made them.

Each test reproduces one defect the issue lists, through the CLI as a user meets it."""

from __future__ import annotations

import json
import shutil

import pytest

from shammie.jobs.cli import main
from shammie.pipeline import jobdir
from test_stage_runner import ids_of, one_line_error, seed_documents, words


def _corpus() -> dict[str, list[tuple[str, str, str]]]:
    base = words(21)
    return {"a.parquet": [("a1", base, "S1"), ("a2", base.upper(), "S1"), ("a3", words(22), "S1")],
            "b.parquet": [("b1", base + " extra", "S1"), ("b2", words(23), "S1")],
            "c.parquet": [("c1", words(24), "S1")]}


# ---------------------------------------------------------------- a moved job


def test_a_copied_job_folder_resumes_instead_of_being_refused_as_changed(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    record = json.loads((job / jobdir.META / "exact-deduped" / "_stage.json").read_text())
    assert all(not i["url"].startswith("/") for i in record["inputs"].values()), record["inputs"]
    moved = tmp_path / "elsewhere" / "job"
    shutil.copytree(job, moved)  # copy2 keeps modification times, as `cp -a` and `mv` do
    shutil.rmtree(job)
    capsys.readouterr()
    assert main(["exact-dedup", str(moved)]) == 0
    assert "already complete" in capsys.readouterr().out
    assert ids_of(moved / "exact-deduped") == ["a1", "a3", "b1", "b2", "c1"]


def test_a_moved_job_recorded_by_an_older_shammie_with_absolute_paths_resumes(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    path = job / jobdir.META / "exact-deduped" / "_stage.json"
    record = json.loads(path.read_text())
    for item in record["inputs"].values():  # what an older Shammie wrote, at the job's first location
        item["url"] = f"/data/old-place/job/{item['url']}"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["exact-dedup", str(job)]) == 0
    assert "already complete" in capsys.readouterr().out
    # an input whose content differs from the record is still named
    record["inputs"]["c.parquet"]["xxh3"] = "0" * 16
    path.write_text(json.dumps(record))
    assert main(["exact-dedup", str(job), "--no-progress"]) == 2
    assert "1 input(s) changed since (c.parquet)" in one_line_error(capsys)


# ---------------------------------------------------------------- an optional step run later


def test_dedup_after_exact_dedup_keeps_the_output_built_from_documents(tmp_path, ray_session, capsys):
    """deduped/ was built from documents/; running exact-dedup afterwards adds exact-deduped/, which
    does not make deduped/ wrong: a re-run keeps it (and says how to rebuild), never refuses it as
    "3 input(s) changed"."""
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["dedup", str(job), "--no-progress"]) == 0
    kept = ids_of(job / "deduped")
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["dedup", str(job)]) == 0
    captured = capsys.readouterr()
    assert "already complete" in captured.out
    assert "--input-stage exact-deduped --overwrite" in captured.err
    assert ids_of(job / "deduped") == kept
    # --overwrite alone rebuilds from the folder it was built from, as the note says (main said "Keeping deduped/ as it is")
    assert main(["dedup", str(job), "--overwrite", "--no-progress"]) == 0
    assert "keeps reading documents/" in capsys.readouterr().err
    assert json.loads((job / "stats.json").read_text())["dedup"]["input_stage"] == "documents"
    assert ids_of(job / "deduped") == kept
    # asking for the newer folder explicitly names the folders, not each file
    assert main(["dedup", str(job), "--input-stage", "exact-deduped", "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "built from documents/ and this run reads exact-deduped/" in err and "input(s) changed" not in err
    assert main(["dedup", str(job), "--input-stage", "exact-deduped", "--overwrite", "--no-progress"]) == 0
    assert json.loads((job / "stats.json").read_text())["dedup"]["input_stage"] == "exact-deduped"


# ---------------------------------------------------------------- the lock folder


def test_locks_as_a_file_is_a_one_line_error(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    (job / "_locks").write_text("not a folder")
    assert main(["exact-dedup", str(job), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "_locks exists and is not a folder" in err
    assert not (job / "exact-deduped").exists()


# ---------------------------------------------------------------- the shard store's defaults


def test_shard_without_an_edu_step_groups_by_site_by_default(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["shard", str(job), "--train-tokenizer", "1000", "--no-progress"]) == 0
    stats = json.loads((job / "stats.json").read_text())["shard"]
    assert stats["group_by"] == "site" and set(stats["domains"]) == {"x.org"}
    record = json.loads((job / "store" / "_stage.json").read_text())
    assert record["settings"]["group_by"] == "site"


def test_a_tokenizer_short_of_the_vocabulary_asked_is_warned_and_recorded(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["shard", str(job), "--group-by", "site", "--train-tokenizer", "32000", "--no-progress"]) == 0
    captured = capsys.readouterr()
    tokenizer = json.loads((job / "stats.json").read_text())["shard"]["tokenizer"]
    assert tokenizer["vocab_asked"] == 32000 and tokenizer["vocab_size"] < 32000
    assert f"has {tokenizer['vocab_size']} pieces, not the 32000 asked" in captured.err
    assert f"vocab {tokenizer['vocab_size']} of 32000 asked" in captured.out
    manifest = json.loads((job / "store" / "manifest.json").read_text())
    assert manifest["tokenizer"]["vocab_asked"] == 32000
    # the report's recipe says it too
    from shammie.jobs.report import write_report

    write_report(str(job))
    html = (job / "report.html").read_text()
    assert f"<td>store: tokenizer vocabulary</td><td>{tokenizer['vocab_size']} of 32000 asked</td>" in html


# ---------------------------------------------------------------- classified/ in the folder order


def test_a_complete_classified_folder_is_read_by_edu_score_and_the_store(tmp_path):
    from shammie.filters.scoring import ScoreOptions, ScoreStage

    job = str(tmp_path / "job")
    for folder in ("documents", "deduped", "classified"):
        (tmp_path / "job" / folder).mkdir(parents=True)
        jobdir.mark_complete(job, folder)
    edu = ScoreStage(job, ScoreOptions(job=job, model="edu.bin", kind="edu"))
    assert edu.input_stage() == "classified"          # the order `shammie run` chains them in
    assert jobdir.resolve_input_stage(job) == "classified"   # the store's default input
    quality = ScoreStage(job, ScoreOptions(job=job, model="q.bin", kind="quality"))
    assert quality.input_stage() == "deduped"         # never its own output
    (tmp_path / "job" / "scored").mkdir()
    jobdir.mark_complete(job, "scored")
    assert jobdir.resolve_input_stage(job) == "scored"


# ---------------------------------------------------------------- Ray start-up apart from a stage's throughput


def test_ray_start_up_is_recorded_apart_and_left_out_of_the_throughput(tmp_path, monkeypatch):
    import time

    from shammie.pipeline import ray_runtime
    from shammie.pipeline.runner import RunOptions, run_stage
    from shammie.pipeline.stage import InputFile, Phase, Stage, Task

    def start_ray_then_work(payload):
        monkeypatch.setattr(ray_runtime, "_START_SECONDS", [ray_runtime.start_seconds() + 0.2])
        time.sleep(0.3)  # 0.2 s of it "starting Ray"
        return {"documents": 10}

    class Tiny(Stage):
        name, output = "tiny", "tiny"

        def resolve_inputs(self):
            return [InputFile("in", "in", {"size": 1})]

        def plan(self, inputs, out):
            return [Task("t", {})]

        def phases(self, ctx):
            yield Phase("tiny", plan=lambda done: ctx.tasks, task=start_ray_then_work, on_driver=True)

    job = tmp_path / "job"
    job.mkdir()
    section = run_stage(Tiny(str(job)), RunOptions(progress=False)).section
    assert section["ray_start_seconds"] == pytest.approx(0.2)
    # the phase's wall time leaves Ray's start-up out too
    assert 0.09 <= section["phases"]["tiny"]["seconds"] < 0.28
    assert section["docs_per_s"] == pytest.approx(10 / (section["seconds"] - 0.2), rel=0.02)
    assert section["docs_per_s"] > 10 / section["seconds"]


# ---------------------------------------------------------------- lineage: the report and the card


def test_the_report_and_the_card_describe_the_store_by_its_lineage_and_flag_what_it_left_out(
        tmp_path, ray_session, capsys):
    """The store is built from deduped/; decontaminate runs afterwards. The report's funnel and the
    dataset card must count the store's own steps (not decontamination, which it never went
    through), end at the store's documents, say what it does not reflect, and the card names no
    local path."""
    from shammie.jobs.report import write_report
    from shammie.mixing.export import export_store

    job = tmp_path / "job"
    seed_documents(job, _corpus())
    jobdir.update_stats(str(job), "crawl", {"records_read": 9, "kept": 6, "documents": 6, "dropped": {"language": 3},
                                           "filter_order": ["language"], "seconds": 1.0})
    assert main(["dedup", str(job), "--no-progress"]) == 0
    assert main(["shard", str(job), "--group-by", "site", "--train-tokenizer", "1000", "--no-progress"]) == 0
    store_docs = json.loads((job / "stats.json").read_text())["shard"]["documents"]
    bench = tmp_path / "bench.txt"
    bench.write_text(" ".join(f"benchmark{i}" for i in range(20)) + "\n")
    assert main(["decontaminate", str(job), "--against", str(bench), "--no-progress"]) == 0

    _, plots = write_report(str(job))
    funnel = dict(next(p for p in plots if p.key == "funnel").table)
    assert "after decontamination" not in funnel
    assert funnel["in the store"] == store_docs and "after dedup" in funnel
    html = (job / "report.html").read_text()
    assert "the store was built from deduped/; decontaminated/ (complete, further downstream) is not in it" in html

    out = tmp_path / "hf"
    export_store(str(job / "store"), str(out), "hf")
    card = (out / "README.md").read_text()
    assert "after decontamination" not in card and "| after dedup |" in card
    assert f"| in the store | {store_docs:,} |" in card
    assert "decontaminated/ (complete, further downstream) is not in it" in card
    assert str(tmp_path) not in card

    # the dry run of a job whose plan reads decontaminated/ says the finished store is stale
    from shammie.jobs.config import load_config
    from shammie.jobs.runner import format_plan, plan

    config = load_config(None, data={"output": str(job), "crawl": {"enabled": False},
                                     "decontaminate": {"enabled": True, "against": [str(bench)]},
                                     "shard": {"group_by": "site", "train_tokenizer": 1000}})
    text = format_plan(config, plan(config))
    assert "note: built from deduped/, but the plan reads decontaminated/ (stale" in text
    record = json.loads((job / "store" / "_stage.json").read_text())
    assert record["built_from"] == [{"folder": "deduped", "build_id": json.loads(
        (job / "_meta" / "deduped" / "_SUCCESS").read_text())["build_id"]}]


def test_a_model_kept_inside_the_job_is_recorded_by_its_job_relative_path(tmp_path):
    from shammie.filters.scoring import ScoreOptions, ScoreStage

    job = tmp_path / "job"
    (job / "models").mkdir(parents=True)
    (job / "models" / "edu.bin").write_bytes(b"not really a model")
    for folder in ("documents",):
        (job / folder).mkdir()
        jobdir.mark_complete(str(job), folder)
    stage = ScoreStage(str(job), ScoreOptions(job=str(job), model=str(job / "models" / "edu.bin")))
    assert stage.settings()["model"] == "models/edu.bin"
    outside = tmp_path / "edu.bin"
    outside.write_bytes(b"x")
    assert ScoreStage(str(job), ScoreOptions(job=str(job), model=str(outside))).settings()["model"] == str(outside)


def test_lineage_names_a_folder_rebuilt_since_it_was_read(tmp_path):
    from shammie.pipeline import lineage, storage

    job = str(tmp_path / "job")

    def complete(folder: str, outputs: dict, built_from: str | None = None, stage: str = "dedup") -> None:
        (tmp_path / "job" / folder).mkdir(parents=True, exist_ok=True)
        jobdir.mark_complete(job, folder, {"outputs": outputs})
        if built_from:
            storage.write_json_atomic(storage.join(jobdir.meta_path(job, folder), "_stage.json"), {
                "stage": stage, "settings": {"input_stage": built_from},
                "built_from": lineage.built_from(job, built_from)})

    complete("documents", {"a.parquet": {"size": 1, "xxh3": "1"}})
    complete("deduped", {"a.parquet": {"size": 1, "xxh3": "2"}}, built_from="documents")
    record = {"stage": "shard", "built_from": lineage.built_from(job, "deduped")}
    assert [link.folder for link in lineage.chain(job, record)] == ["documents", "deduped"]
    assert lineage.stale(job, record, "the store") == []
    complete("documents", {"a.parquet": {"size": 2, "xxh3": "3"}})  # the crawl was re-made since
    notes = lineage.stale(job, record, "the store")
    assert len(notes) == 1 and notes[0].startswith("deduped/ was built from an earlier build of documents/")
