"""Declared phases and per-stage costs (issue 24, items 1 and 6).

A multi-pass stage declares its phases; the runner runs, resumes and times them, so no stage
overrides how it is run and every stage's stats section has the same cost keys."""

from __future__ import annotations

import importlib
import json
import sys
import time

import ray.cloudpickle as cloudpickle
import pytest

from shammie.jobs.cli import main
from shammie.pipeline import jobdir, storage
from shammie.pipeline.runner import RunOptions, run_stage
from shammie.pipeline.stage import InputFile, Phase, Stage, Task
from test_stage_runner import seed_documents, words

STAGE_MODULES = ("shammie.filters.crawl", "shammie.dedup.exact", "shammie.dedup.minhash",
                 "shammie.filters.decontaminate", "shammie.filters.scoring", "shammie.mixing.shard_stage",
                 "shammie.mixing.export")
COST_KEYS = {"seconds", "cpu_seconds", "tasks"}
# The toy stage's functions reach Ray's workers by value: they cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _busy(cpu_seconds: float) -> None:
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def squares_stage(calls: str, fail_once: str | None = None, setup_cpu: float = 0.0, task_cpu: float = 0.0):
    """A two-phase toy stage: `square` writes one work file per number, `sum` reads the files the first
    phase's summary names and writes the output. Each task appends its name to `calls`; with `fail_once`
    (a file path) the `sum` task fails the first time."""

    def square(p):
        with open(calls, "a") as f:
            f.write(f"square {p['n']}\n")
        storage.write_bytes_atomic(p["output"], str(p["n"] ** 2).encode())
        return {"value": p["n"] ** 2}

    class Squares(Stage):
        name, output = "squares", "squares"
        work = "_work"

        def resolve_inputs(self):
            return [InputFile("in", "in", {"size": 1})]

        def plan(self, inputs, out):
            return [Task("sum", {"output": storage.join(out, "sum.txt")}, ("sum.txt",))]

        def setup(self):
            _busy(setup_cpu)

        def run_task(self, payload, out):
            import os

            with open(calls, "a") as f:
                f.write("sum\n")
            if fail_once and not os.path.exists(fail_once):
                open(fail_once, "w").close()
                raise RuntimeError("sum failed once")
            total = sum(int(open(storage.strip_file_scheme(u)).read()) for u in payload["files"])
            _busy(task_cpu)
            storage.write_bytes_atomic(payload["output"], str(total).encode())
            return {"documents": 1, "total": total}

        def phases(self, ctx):
            work = [ctx.book("_work", f"{n}.txt") for n in range(1, 4)]
            yield Phase("square", plan=lambda done: [Task(f"n{n}", {"n": n, "output": work[n - 1]}, (work[n - 1],))
                                                     for n in range(1, 4)],
                        task=square, markers="_work/square",
                        summary=lambda results: {"files": work, "values": sorted(r["value"] for r in results.values())})
            yield Phase("sum", plan=lambda done: [Task(t.name, {**t.payload, "files": done["square"]["files"]}, t.outputs)
                                                  for t in ctx.tasks])

        def summarize(self, results):
            return {"documents": 1, "total": results["sum"]["total"], "squares": results.phases["square"]["values"]}

    return Squares


def test_phases_run_in_order_each_planned_from_the_ones_before_and_timed_by_the_runner(tmp_path, ray_session):
    job = tmp_path / "job"
    job.mkdir()
    calls = tmp_path / "calls.txt"
    stage = squares_stage(str(calls), setup_cpu=0.6, task_cpu=0.2)(str(job))
    section = run_stage(stage, RunOptions(progress=False, workers=2)).section
    assert (job / "squares" / "sum.txt").read_text() == "14"
    assert section["total"] == 14 and section["squares"] == [1, 4, 9]
    phases = section["phases"]
    assert list(phases) == ["square", "sum"]
    assert {k: phases[k]["tasks"] for k in phases} == {"square": 3, "sum": 1}
    assert all(COST_KEYS <= set(p) for p in phases.values())
    # CPU measured around each task by the runner, the worker's set-up apart
    assert phases["sum"]["setup_cpu_seconds"] >= 0.55
    assert 0.18 <= phases["sum"]["cpu_seconds"] < 0.5
    assert section["cpu_seconds"] == pytest.approx(sum(p["cpu_seconds"] for p in phases.values()), abs=0.002)
    assert section["setup_cpu_seconds"] >= 0.55 and "ray_start_seconds" in section
    assert '"_cpu_seconds"' not in json.dumps(section) and '"_setup_cpu_seconds"' not in json.dumps(section)
    # the phases' work folder is gone once the stage is complete; stats.json has the same section
    assert not (job / jobdir.META / "squares" / "_work").exists()
    assert jobdir.read_stats(str(job))["squares"]["phases"] == phases


def test_a_failed_phase_resumes_without_redoing_the_phases_before_it(tmp_path, ray_session):
    job = tmp_path / "job"
    job.mkdir()
    calls = tmp_path / "calls.txt"
    stage_class = squares_stage(str(calls), fail_once=str(tmp_path / "failed"))
    with pytest.raises(Exception, match="sum failed once"):
        run_stage(stage_class(str(job)), RunOptions(progress=False, workers=2))
    assert sorted(calls.read_text().split("\n")[:-1]) == ["square 1", "square 2", "square 3", "sum"]
    section = run_stage(stage_class(str(job)), RunOptions(progress=False, workers=2)).section
    assert section["total"] == 14
    # the second run redid only the phase that failed
    assert sorted(calls.read_text().split("\n")[:-1]) == ["square 1", "square 2", "square 3", "sum", "sum"]


def test_no_stage_overrides_how_it_is_run():
    """Every stage declares phases (or the default one); none runs its tasks by hand."""
    for module in STAGE_MODULES:
        importlib.import_module(module)
    assert not hasattr(Stage, "execute")
    seen, todo = [], list(Stage.__subclasses__())
    while todo:
        cls = todo.pop()
        seen.append(cls.__qualname__)
        todo.extend(cls.__subclasses__())
        assert "execute" not in vars(cls), f"{cls.__module__}.{cls.__qualname__} overrides execute"
    assert {"DedupStage", "ExactDedupStage", "DecontaminateStage", "CrawlStage", "ShardStage",
            "ExportStage"} <= set(seen)


def _corpus():
    base = words(31)
    return {"a.parquet": [("a1", base, "S1"), ("a2", words(32), "S1"), ("a3", base, "S1")],
            "b.parquet": [("b1", base + " more", "S1"), ("b2", words(33), "S1")]}


def _costs_agree(section: dict, phases: list[str], driver_steps: tuple[str, ...] = ()) -> None:
    """Every phase has the cost keys; `driver_steps` are phases of no task (a step of the driver)."""
    assert sorted(section["phases"]) == sorted(phases)  # stats.json keeps its keys sorted
    for name, p in section["phases"].items():
        assert COST_KEYS <= set(p), name
        if name in driver_steps:
            assert p["tasks"] == 0 and p["cpu_seconds"] == 0, (name, p)
            continue
        assert p["tasks"] >= 1 and p["seconds"] >= 0 and p["cpu_seconds"] > 0, (name, p)
    assert section["cpu_seconds"] == pytest.approx(sum(p["cpu_seconds"] for p in section["phases"].values()),
                                                   abs=0.002)
    # (the store's seconds are taken when its stats are written, inside its publish step)
    assert "ray_start_seconds" in section and section["seconds"] >= sum(
        p["seconds"] for name, p in section["phases"].items() if name not in driver_steps)


def test_dedup_and_exact_dedup_record_every_phase_with_one_cost_schema(tmp_path, ray_session):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["exact-dedup", str(job), "--no-progress"]) == 0
    exact = jobdir.read_stats(str(job))["exact_dedup"]
    _costs_agree(exact, ["exact_hash", "exact_reduce", "filter"])
    assert exact["removed"] == 1
    assert main(["dedup", str(job), "--no-progress", "--input-stage", "documents"]) == 0
    dedup = jobdir.read_stats(str(job))["dedup"]
    _costs_agree(dedup, ["exact_hash", "exact_reduce", "signatures", "buckets", "clusters", "filter"])
    assert dedup["removed"] == 2 and dedup["cluster_mode"] == "one task"
    # dedup's own per-phase detail is the runner's timing plus what dedup measures besides
    for name, timing in dedup["phases"].items():
        assert {k: dedup["stages"][name][k] for k in timing} == timing
    # read back from stats.json (sorted keys), the summary lists the phases as they ran
    from shammie.dedup.minhash import summarise

    ran = [line.split()[1].rstrip(":") for line in summarise(dedup).splitlines() if line.startswith("  stage ")]
    assert ran == ["exact_hash", "exact_reduce", "signatures", "buckets", "clusters", "filter"]
    assert dedup["stages"]["buckets"]["bytes_read"] > 0 and dedup["stages"]["clusters"]["nodes"] == 3
    assert not (job / jobdir.META / "deduped" / "_work").exists()


def test_distributed_cluster_rounds_are_timed_as_one_clusters_phase(tmp_path, ray_session):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    assert main(["dedup", str(job), "--no-progress", "--max-cluster-docs", "2"]) == 0
    dedup = jobdir.read_stats(str(job))["dedup"]
    _costs_agree(dedup, ["exact_hash", "exact_reduce", "signatures", "buckets", "clusters", "filter"])
    assert "rounds" in dedup["cluster_mode"] and dedup["removed"] == 2
    parts = int(dedup["cluster_mode"].split()[0])
    rounds = int(dedup["cluster_mode"].split(", ")[1].split()[0])
    assert dedup["phases"]["clusters"]["tasks"] == parts * (rounds + 2)


def test_decontaminate_records_its_phase_and_the_index_it_built(tmp_path, ray_session):
    job = tmp_path / "job"
    seed_documents(job, _corpus())
    bench = tmp_path / "bench.txt"
    bench.write_text(" ".join(words(32).split()[:20]) + "\n")
    assert main(["decontaminate", str(job), "--against", str(bench), "--no-progress"]) == 0
    section = jobdir.read_stats(str(job))["decontaminate"]
    _costs_agree(section, ["decontaminate"])
    assert section["removed"] == 1 and section["index_ngrams"] == 8
    assert section["benchmarks"][str(bench)]["items"] == 1
    assert not (job / jobdir.META / "decontaminated" / "_work").exists()


def test_the_store_build_is_phases_of_the_shard_stage_with_their_costs(tmp_path, ray_session):
    """The store's passes are the shard stage's phases: timed and costed by the runner (its Ray tasks'
    CPU included, not only the driver's), resumed from their markers, no markers or stats of their own left."""
    from shammie.mixing.store_testing import synthetic_documents, write_job

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(40, seed=s, prefix=f"f{s}") for s in range(3)])
    args = ["shard", str(job), "--group-by", "site", "--train-tokenizer", "400", "--tokenizer-sample-mb", "1",
            "--no-progress", "--workers", "2"]
    assert main(args) == 0
    section = jobdir.read_stats(str(job))["shard"]
    _costs_agree(section, ["count", "reduce", "tokenize", "merge", "publish"], driver_steps=("publish",))
    assert section["phases"]["tokenize"]["tasks"] == 3 and section["documents"] == 120
    assert section["tokenize_seconds"] == section["phases"]["tokenize"]["seconds"]
    assert not (job / "store" / "_staging").exists()
    assert main(args) == 0  # complete: nothing redone
    assert jobdir.read_stats(str(job))["shard"]["phases"] == section["phases"]


def test_phases_keep_the_order_they_ran_in_through_stats_json():
    """stats.json is written with sorted keys: each phase carries its place, and the report and dedup's
    summary list phases as they ran (exact_hash before signatures, not alphabetically)."""
    from shammie.dedup.minhash import summarise
    from shammie.pipeline.runner import add_costs

    timings = {name: {"seconds": 1.0, "cpu_seconds": 0.5, "tasks": 1}
               for name in ("exact_hash", "exact_reduce", "signatures", "buckets", "clusters", "filter")}
    section: dict = {}
    add_costs(section, timings, 0.0)
    stats = json.loads(json.dumps({"scope": "per snapshot", "documents_in": 1, "clusters": 0, "removed": 0,
                                   "kept": 1, "seconds": 1.0, "per_snapshot": {}, "stages": section["phases"]},
                                  sort_keys=True))
    lines = [line.split()[1].rstrip(":") for line in summarise(stats).splitlines() if line.startswith("  stage ")]
    assert lines == list(timings)
