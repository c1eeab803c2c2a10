"""Every stage folder loads as a folder, the way users type it: `datasets.load_dataset("parquet",
data_dir=...)`, `polars.read_parquet(folder)`, `pandas.read_parquet(folder)` and duckdb's
`read_parquet('folder/**/*.parquet')`. The runner's bookkeeping, the dedup index and the
decontamination removal list live in JOB/_meta/<folder>/, where no loader of the folder looks."""

from __future__ import annotations

import json
import shutil

import pytest

from shammie.jobs.cli import main
from shammie.pipeline import jobdir
from test_stage_runner import ids_of, seed_documents, words


def load_every_way(folder, cache) -> dict[str, int]:
    """Rows each client reads from the folder, called as its users call it."""
    datasets = pytest.importorskip("datasets")
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    return {
        "datasets": datasets.load_dataset("parquet", data_dir=str(folder), split="train", cache_dir=str(cache)).num_rows,
        "polars": polars.read_parquet(str(folder)).height,
        "pandas": len(pd.read_parquet(folder)),
        "duckdb": duckdb.execute(f"select count(*) from read_parquet('{folder}/**/*.parquet')").fetchone()[0],
    }


@pytest.fixture
def finished_job(tmp_path, ray_session):
    shared = words(801)
    item = words(802, 20)
    seed_documents(tmp_path / "job", {
        "a.parquet": [("a1", shared, "S1"), ("a2", words(803), "S1"), ("a3", f"{words(804, 50)} {item}", "S1")],
        "b.parquet": [("b1", shared, "S1"), ("b2", words(805), "S1")]})
    job = tmp_path / "job"
    bench = tmp_path / "bench.txt"
    bench.write_text(item + "\n")
    assert main(["dedup", str(job), "--keep-index", "--no-progress"]) == 0
    assert main(["decontaminate", str(job), "--against", str(bench), "--no-progress"]) == 0
    return job


def test_document_folders_load_with_datasets_polars_pandas_and_duckdb(finished_job, tmp_path):
    job = finished_job
    expected = {"documents": 5, "deduped": 4, "decontaminated": 3}
    for folder, rows in expected.items():
        loaded = load_every_way(job / folder, tmp_path / f"cache-{folder}")
        assert loaded == dict.fromkeys(loaded, rows), (folder, loaded)
        assert sorted(p.name for p in (job / folder).iterdir()) == ["a.parquet", "b.parquet"]
    # what used to sit inside the folders is beside them, and still does its job
    meta = job / jobdir.META
    assert (meta / "deduped" / "_SUCCESS").exists() and (meta / "deduped" / "_stage.json").exists()
    assert (meta / "deduped" / "index" / "index.json").exists()
    removed = meta / "decontaminated" / "removed" / "removed.parquet"
    assert load_every_way(removed.parent, tmp_path / "cache-removed")["pandas"] == 1
    stats = json.loads((job / "stats.json").read_text())["decontaminate"]
    assert (job / stats["removed_list"]) == removed


def test_a_job_of_the_older_layout_resumes_and_its_bookkeeping_moves_out(finished_job, tmp_path, capsys):
    """A job written before the move (bookkeeping inside deduped/) is not recomputed: the next run
    moves `_SUCCESS`, `_stage.json`, `_tasks/` and `_index/` out and finds the output complete."""
    job = finished_job
    before = {p.name: p.stat().st_mtime_ns for p in (job / "deduped").glob("*.parquet")}
    meta = job / jobdir.META / "deduped"
    for name, legacy in (("_SUCCESS", "_SUCCESS"), ("_stage.json", "_stage.json"), ("_tasks", "_tasks"),
                         ("index", "_index")):
        shutil.move(str(meta / name), str(job / "deduped" / legacy))
    shutil.rmtree(meta)
    # its input folder too: still complete for dedup, which reads its _SUCCESS where it is
    shutil.move(str(job / jobdir.META / "documents" / "_SUCCESS"), str(job / "documents" / "_SUCCESS"))
    capsys.readouterr()
    assert main(["dedup", str(job), "--keep-index", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "an older Shammie's layout" in err and "_tasks" in err, err
    assert sorted(p.name for p in (job / "deduped").iterdir()) == ["a.parquet", "b.parquet"]
    assert {p.name: p.stat().st_mtime_ns for p in (job / "deduped").glob("*.parquet")} == before
    assert (meta / "index" / "index.json").exists()


def test_overwrite_swaps_the_folder_and_its_bookkeeping_and_an_interrupted_swap_is_finished(
        finished_job, tmp_path, monkeypatch, capsys):
    from shammie.pipeline import runner

    job = finished_job
    assert main(["dedup", str(job), "--across-snapshots", "--keep-index", "--overwrite", "--no-progress"]) == 0
    record = json.loads((job / jobdir.META / "deduped" / "_stage.json").read_text())
    assert record["settings"]["across_snapshots"] is True
    assert not [p for p in (job / jobdir.META).iterdir() if ".new-" in p.name or ".old-" in p.name]
    assert not [p for p in job.iterdir() if ".new-" in p.name or ".old-" in p.name]

    # stopped after the data folder moved in, before its records did
    real = runner.storage.rename
    calls = []

    def stop_at_second(src, dst):
        calls.append((src, dst))
        if len([c for c in calls if ".new-" in c[0]]) == 2:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(runner.storage, "rename", stop_at_second)
    assert main(["dedup", str(job), "--keep-index", "--overwrite", "--no-progress"]) != 0  # interrupted
    monkeypatch.setattr(runner.storage, "rename", real)
    assert len([c for c in calls if ".new-" in c[0]]) == 2
    assert not (job / jobdir.META / "deduped").exists() and (job / "deduped").exists()
    capsys.readouterr()
    before = {p.name: p.stat().st_mtime_ns for p in (job / "deduped").glob("*.parquet")}
    assert main(["dedup", str(job), "--keep-index", "--no-progress"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (job / "deduped").glob("*.parquet")} == before  # not redone
    assert json.loads((job / jobdir.META / "deduped" / "_stage.json").read_text())["settings"]["across_snapshots"] is False
    assert ids_of(job / "deduped") == ["a1", "a2", "a3", "b2"]
