"""The job runner with stand-in stages: chaining, skipping complete steps, resuming
after a failure, passing options and the Ray address through. No Ray is started."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from shammie.jobs.cli import main
from shammie.jobs.config import load_config
from shammie.jobs.runner import run_job
from shammie.pipeline import jobdir


class FakeStages:
    """Stands in for `run_stage` (whose rules tests/test_stage_runner.py covers): records each
    step's stage, options and run options; a step is "complete" when its folder has _SUCCESS
    and it ran before with the same options, else it "runs" and writes _SUCCESS."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, object, object]] = []
        self.fail: set[str] = set()
        self.done: dict[str, object] = {}

        def run_stage(stage, run, log=None):
            from shammie.pipeline.runner import StageResult

            name = stage.name
            success = os.path.join(stage.bookkeeping_url(), jobdir.SUCCESS)
            if os.path.exists(success) and self.done.get(stage.output_url()) == stage.options and not run.overwrite:
                return StageResult({"documents": 7}, "complete")
            self.calls.append((name, stage, run))
            if name in self.fail:
                raise RuntimeError(f"{name} crashed")
            os.makedirs(stage.output_url(), exist_ok=True)
            os.makedirs(os.path.dirname(success), exist_ok=True)
            with open(success, "w") as f:
                f.write("{}")
            self.done[stage.output_url()] = stage.options
            jobdir.update_stats(stage.job, name, {"documents": 7})
            return StageResult({"documents": 7, "seconds": 0.5}, "ran")

        import shammie.jobs.runner as runner
        import shammie.pipeline.ray_runtime as ray_runtime

        monkeypatch.setattr(runner, "run_stage", run_stage)
        self.ray: list[tuple] = []
        monkeypatch.setattr(ray_runtime, "init_ray", lambda address=None, num_cpus=None:
                            self.ray.append((address, num_cpus)) or "fake Ray")
        # the fake Ray, once "joined", is one host (the real queries need a started Ray, which only an
        # earlier test in the same process gave: the file failed alone)
        monkeypatch.setattr(ray_runtime, "_connected", lambda: bool(self.ray))
        monkeypatch.setattr(ray_runtime, "cluster_hosts", lambda: {"this-host"})

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def options(self, name: str):
        return [c[1].options for c in self.calls if c[0] == name][-1]

    def run_options(self, name: str):
        return [c[2] for c in self.calls if c[0] == name][-1]


@pytest.fixture
def fake(monkeypatch) -> FakeStages:
    return FakeStages(monkeypatch)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "warc").mkdir()
    (tmp_path / "edu.bin").write_bytes(b"model")
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent("""
        input: [warc]
        output: job
        workers: 3
        ray_address: 10.1.2.3:6379
        crawl: {languages: [en, de], limit_files: 2}
        dedup: {across_snapshots: true}
        edu: {enabled: true, model: edu.bin, threshold: 3}
        shard: {group_by: edu, train_tokenizer: 500, seq_len: 64}
    """))
    return path


def test_stages_run_in_order_each_reading_the_previous_folder(fake, config_path, tmp_path):
    cfg = load_config(str(config_path))
    summary = run_job(cfg, progress=False, log=lambda m: None)
    job = str(tmp_path / "job")
    assert fake.names() == ["crawl", "dedup", "edu_score", "edu_subset", "shard"]
    crawl = fake.options("crawl")
    assert crawl.inputs == (str(tmp_path / "warc"),) and crawl.output == job
    assert crawl.languages == ("en", "de") and crawl.limit_files == 2
    assert fake.options("dedup").input_stage == "documents"
    assert fake.options("dedup").across_snapshots is True
    assert fake.options("edu_score").input_stage == "deduped"
    assert fake.options("edu_score").model == str(tmp_path / "edu.bin")
    subset = fake.options("edu_subset")
    assert (subset.threshold, subset.input_stage, subset.job) == (3, "scored", job)
    assert [c[1] for c in fake.calls if c[0] == "edu_subset"][0].output_folder() == "edu-3"
    shard = fake.options("shard")
    assert shard.job == job and [c[1] for c in fake.calls if c[0] == "shard"][0].output_url() == f"{job}/store"
    assert shard.input_stage == "edu-3" and shard.group_by == "edu"
    assert shard.train_tokenizer == 500 and shard.seq_len == 64
    assert shard.tokenizer is None and shard.top_k is None  # null: the stage's default
    for name in ("crawl", "dedup", "edu_score", "shard"):
        assert fake.run_options(name).workers == 3
        assert fake.run_options(name).ray_address == "10.1.2.3:6379"
    assert fake.ray == [("10.1.2.3:6379", 3)]  # started once, before the first step
    assert set(summary) == {"crawl", "dedup", "edu_score", "edu_subset", "shard"}
    stats = json.loads((tmp_path / "job" / "stats.json").read_text())
    assert set(stats["run"]["steps"]) == {"crawl", "dedup", "edu_score", "edu_subset", "shard"}
    assert (tmp_path / "job" / "job.yaml").exists()


def test_a_rerun_skips_complete_steps(fake, config_path):
    cfg = load_config(str(config_path))
    run_job(cfg, progress=False, log=lambda m: None)
    fake.calls.clear()
    logs: list[str] = []
    fake.ray.clear()
    run_job(cfg, progress=False, log=logs.append)
    assert fake.calls == [] and fake.ray == []  # nothing to run: Ray is not started
    assert sum("complete, skipped" in m for m in logs) == 5


def test_after_a_failure_the_rerun_starts_at_the_failed_step(fake, config_path):
    cfg = load_config(str(config_path))
    fake.fail.add("edu_score")
    with pytest.raises(RuntimeError, match="edu_score crashed"):
        run_job(cfg, progress=False, log=lambda m: None)
    assert fake.names() == ["crawl", "dedup", "edu_score"]
    fake.calls.clear()
    fake.fail.clear()
    run_job(cfg, progress=False, log=lambda m: None)
    assert fake.names() == ["edu_score", "edu_subset", "shard"]


def test_the_command_line_address_wins_over_the_config(fake, config_path):
    cfg = load_config(str(config_path))
    run_job(cfg, ray_address="auto", progress=False, log=lambda m: None)
    assert fake.run_options("crawl").ray_address == "auto"


def test_disabled_stages_are_left_out_and_the_chain_closes_over_them(fake, config_path, tmp_path):
    cfg = load_config(str(config_path), ["dedup.enabled=false", "edu.enabled=false", "shard.group_by=site"])
    run_job(cfg, progress=False, log=lambda m: None)
    assert fake.names() == ["crawl", "shard"]
    assert fake.options("shard").input_stage == "documents"


def test_a_step_whose_input_was_just_rewritten_is_recomputed(fake, config_path):
    """Only steps downstream of one that ran again are recomputed (overwrite), upstream ones are skipped."""
    run_job(load_config(str(config_path)), progress=False, log=lambda m: None)
    fake.calls.clear()
    run_job(load_config(str(config_path), ["dedup.across_snapshots=false"]), progress=False, log=lambda m: None)
    assert fake.names() == ["dedup", "edu_score", "edu_subset", "shard"]
    assert not fake.run_options("dedup").overwrite  # its own change is refused unless --overwrite (run_stage)
    assert all(fake.run_options(n).overwrite for n in ("edu_score", "edu_subset", "shard"))


def test_cli_run_reports_completion(fake, config_path, capsys):
    assert main(["run", str(config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "shammie report" in out
    assert fake.names()[-1] == "shard"


def test_a_new_edu_threshold_writes_a_new_subset_and_rebuilds_the_store_from_it(fake, config_path):
    run_job(load_config(str(config_path)), progress=False, log=lambda m: None)
    fake.calls.clear()
    run_job(load_config(str(config_path), ["edu.threshold=4"]), progress=False, log=lambda m: None)
    assert fake.names() == ["edu_subset", "shard"]  # scoring is complete and unchanged
    assert [c[1] for c in fake.calls if c[0] == "edu_subset"][0].output_folder() == "edu-4"
    assert fake.options("shard").input_stage == "edu-4" and fake.run_options("shard").overwrite
