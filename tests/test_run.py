"""The job runner with stand-in stages: chaining, skipping complete steps, resuming
after a failure, passing options and the Ray address through. No Ray is started."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import pytest

from shammie.jobs.cli import main
from shammie.jobs.config import load_config
from shammie.jobs.runner import run_job
from shammie.pipeline import jobdir


class FakeStages:
    """Records every stage call; each call writes its folder's _SUCCESS like a real stage."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail: set[str] = set()
        self.ray: list[tuple] = []

        def stage(name, folder_of):
            def fn(*args, **kwargs):
                self.calls.append((name, args, kwargs))
                if name in self.fail:
                    raise RuntimeError(f"{name} crashed")
                job, folder = folder_of(args, kwargs)
                jobdir.mark_complete(job, folder)
                result = {"documents": 7, "seconds": 0.5}
                jobdir.update_stats(job, name, result)
                return result
            return fn

        modules = {
            "shammie.pipeline.crawl": {"crawl": stage("crawl", lambda a, k: (a[1], "documents"))},
            "shammie.dedup.minhash": {"dedup": stage("dedup", lambda a, k: (a[0], "deduped"))},
            "shammie.filters.edu": {"score": stage("edu_score", lambda a, k: (a[0], "scored")),
                                    "subset": stage("edu_subset", lambda a, k: (a[0], k["output"]))},
            "shammie.mixing.store": {"build_store": stage("shard", lambda a, k: (a[1].rsplit("/", 1)[0], "store"))},
        }
        for module_name, attrs in modules.items():
            module = types.ModuleType(module_name)
            for attr, value in attrs.items():
                setattr(module, attr, value)
            monkeypatch.setitem(sys.modules, module_name, module)
        import shammie.pipeline.ray_runtime as ray_runtime

        monkeypatch.setattr(ray_runtime, "init_ray", lambda address=None, num_cpus=None:
                            self.ray.append((address, num_cpus)) or "fake Ray")

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def kwargs(self, name: str) -> dict:
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
    crawl_call = fake.calls[0]
    assert crawl_call[1] == ([str(tmp_path / "warc")], job)
    assert crawl_call[2]["languages"] == ("en", "de") and crawl_call[2]["limit_files"] == 2
    assert fake.kwargs("dedup")["input_stage"] == "documents"
    assert fake.kwargs("dedup")["across_snapshots"] is True
    assert fake.kwargs("edu_score")["input_stage"] == "deduped"
    assert fake.kwargs("edu_score")["model"] == str(tmp_path / "edu.bin")
    assert fake.kwargs("edu_subset") == {"threshold": 3, "output": "edu-3", "input_stage": "scored"}
    shard = fake.calls[-1]
    assert shard[1] == (job, f"{job}/store")
    assert shard[2]["input_stage"] == "edu-3" and shard[2]["group_by"] == "edu"
    assert shard[2]["train_tokenizer"] == 500 and shard[2]["seq_len"] == 64
    assert "tokenizer" not in shard[2] and "top_k" not in shard[2]  # null: the stage's default
    for name in ("crawl", "dedup", "edu_score", "shard"):
        assert fake.kwargs(name)["workers"] == 3
        assert fake.kwargs(name)["ray_address"] == "10.1.2.3:6379"
    assert fake.ray == [("10.1.2.3:6379", 3)]
    assert set(summary) == {"crawl", "dedup", "edu_score", "edu_subset", "shard"}
    stats = json.loads((tmp_path / "job" / "stats.json").read_text())
    assert set(stats["run"]["steps"]) == {"crawl", "dedup", "edu_score", "edu_subset", "shard"}
    assert (tmp_path / "job" / "job.yaml").exists()


def test_a_rerun_skips_complete_steps_and_does_not_start_ray(fake, config_path):
    cfg = load_config(str(config_path))
    run_job(cfg, progress=False, log=lambda m: None)
    fake.calls.clear()
    fake.ray.clear()
    logs: list[str] = []
    summary = run_job(cfg, progress=False, log=logs.append)
    assert fake.calls == [] and fake.ray == []
    assert all(v == "skipped (complete)" for v in summary.values())
    assert "every step is already complete" in logs[-1]


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
    assert fake.ray == [("auto", 3)]
    assert fake.kwargs("crawl")["ray_address"] == "auto"


def test_disabled_stages_are_left_out_and_the_chain_closes_over_them(fake, config_path, tmp_path):
    cfg = load_config(str(config_path), ["dedup.enabled=false", "edu.enabled=false", "shard.group_by=site"])
    run_job(cfg, progress=False, log=lambda m: None)
    assert fake.names() == ["crawl", "shard"]
    assert fake.kwargs("shard")["input_stage"] == "documents"


def test_changed_options_of_a_complete_step_are_warned_about(fake, config_path):
    run_job(load_config(str(config_path)), progress=False, log=lambda m: None)
    logs: list[str] = []
    run_job(load_config(str(config_path), ["dedup.across_snapshots=false"]), progress=False, log=logs.append)
    assert any("dedup is complete" in m and "options changed" in m for m in logs), logs
    assert not any("crawl is complete" in m for m in logs), logs


def test_cli_run_reports_completion(fake, config_path, capsys):
    assert main(["run", str(config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "shammie report" in out
    assert fake.names()[-1] == "shard"


def test_a_new_edu_threshold_writes_a_new_subset_and_flags_the_stale_store(fake, config_path):
    run_job(load_config(str(config_path)), progress=False, log=lambda m: None)
    fake.calls.clear()
    logs: list[str] = []
    run_job(load_config(str(config_path), ["edu.threshold=4"]), progress=False, log=logs.append)
    warnings = [m for m in logs if m.startswith("warning")]
    assert len(warnings) == 1 and "shard is complete" in warnings[0], logs  # it was built from edu-3
    assert fake.names() == ["edu_subset"]  # scoring is complete and unchanged
    assert fake.kwargs("edu_subset")["output"] == "edu-4"
