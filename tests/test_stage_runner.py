"""The stage runner's rules, one test per failure the stage-runner issue lists.

Every stage goes through `pipeline.runner.run_stage`; these tests drive it through the
real stages (crawl, dedup, shard) and the CLI, as a user would."""

from __future__ import annotations

import errno
import http.server
import json
import os
import runpy
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from shammie.jobs.cli import main
from shammie.pipeline import documents, jobdir, storage
from shammie.pipeline.errors import OutputError, StageRefused
from shammie.pipeline.runner import StageLock, output_record

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers


def seed_documents(job: Path, files: dict[str, list[tuple[str, str, str]]], manifest: bool = True) -> None:
    """A finished documents/ folder as a crawl leaves it: Parquet files, then _SUCCESS listing them."""
    for name, rows in files.items():
        table = pa.table({
            "id": [r[0] for r in rows], "text": [r[1] for r in rows], "url": [f"http://x.org/{r[0]}" for r in rows],
            "dump": [r[2] for r in rows], "date": [None] * len(rows), "language": ["en"] * len(rows),
            "language_score": [1.0] * len(rows), "warc_file": ["w"] * len(rows),
            "warc_offset": list(range(len(rows)))}, schema=documents.DOCUMENT_SCHEMA)
        documents.write_table(table, str(job / "documents" / name))
    outputs = {n: output_record(str(job / "documents" / n)) for n in files} if manifest else None
    storage.write_json_atomic(jobdir.success_path(str(job), "documents"),
                              {"stage": "crawl", **({"outputs": outputs} if manifest else {})})


def words(seed: int, n: int = 120) -> str:
    import random

    r = random.Random(seed)  # letters only: dedup's normalisation maps every digit to 0
    return " ".join("".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(3, 9)))
                    for _ in range(n))


def corpus() -> dict[str, list[tuple[str, str, str]]]:
    shared = words(1)
    return {"a.parquet": [("a1", shared, "CC-MAIN-2024-10"), ("a2", words(2), "CC-MAIN-2024-10")],
            "b.parquet": [("b1", shared, "CC-MAIN-2024-10"), ("b2", words(3), "CC-MAIN-2024-10")]}


def ids_of(folder: Path) -> list[str]:
    return sorted(i for f in sorted(folder.glob("*.parquet")) for i in documents.read_table(str(f))["id"].to_pylist())


@pytest.fixture(scope="module")
def example_warcs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("warcs") / "warc"
    runpy.run_path(str(REPO / "examples" / "make_example_warcs.py"))["write_example_warcs"](str(folder), 3)
    return folder


def crawl_cli(*args: str) -> int:
    return main(["crawl", *args, "--no-progress", "--workers", "2"])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- dedup re-runs


def test_dedup_refuses_an_input_whose_files_are_gone_and_keeps_its_finished_output(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, corpus())
    assert main(["dedup", str(job), "--no-progress"]) == 0
    assert ids_of(job / "deduped") == ["a1", "a2", "b2"]
    before = {p.name: p.read_bytes() for p in (job / "deduped").iterdir() if p.is_file()}
    capsys.readouterr()
    for f in (job / "documents").glob("*.parquet"):
        f.unlink()
    assert main(["dedup", str(job), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "a.parquet is listed in _meta/documents/_SUCCESS but missing" in err
    after = {p.name: p.read_bytes() for p in (job / "deduped").iterdir() if p.is_file()}
    assert after == before  # the finished output is untouched, _SUCCESS included


def test_dedup_with_other_settings_is_refused_then_overwrite_replaces_whole(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    files = corpus()
    files["b.parquet"] = [(i, t, "CC-MAIN-2024-22") for i, t, _ in files["b.parquet"]]  # another snapshot
    seed_documents(job, files)
    assert main(["dedup", str(job), "--no-progress"]) == 0
    assert ids_of(job / "deduped") == ["a1", "a2", "b1", "b2"]  # per snapshot: no duplicate
    capsys.readouterr()
    assert main(["dedup", str(job), "--across-snapshots", "--no-progress"]) == 2
    assert "settings changed (across_snapshots: false -> true)" in one_line_error(capsys)
    stats = json.loads((job / "stats.json").read_text())
    assert stats["dedup"]["scope"] == "per snapshot" and ids_of(job / "deduped") == ["a1", "a2", "b1", "b2"]
    assert main(["dedup", str(job), "--across-snapshots", "--overwrite", "--no-progress"]) == 0
    assert ids_of(job / "deduped") == ["a1", "a2", "b2"]
    stats = json.loads((job / "stats.json").read_text())
    assert stats["dedup"]["scope"] == "across snapshots" and stats["dedup"]["settings"]["across_snapshots"]
    assert json.loads((job / "_meta" / "deduped" / "_stage.json").read_text())["settings"]["across_snapshots"] is True
    assert not [p for p in job.iterdir() if p.name.startswith(".deduped")]  # the old folder is gone after the swap


def test_a_second_run_of_a_stage_fails_at_once_or_waits(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, corpus())
    # Another process holds the dedup lock, as a concurrent `shammie dedup` would.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from shammie.pipeline.runner import StageLock
        with StageLock({str(job)!r}, "deduped", "dedup"):
            print("held", flush=True)
            time.sleep(float(sys.argv[1]))
    """), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        assert main(["dedup", str(job), "--across-snapshots", "--no-progress"]) == 2
        err = one_line_error(capsys)
        assert "another `shammie dedup` is running" in err and f"pid {holder.pid}" in err and "--wait" in err
        assert time.monotonic() - started < 10  # at once, not after the other run
        assert not (job / "_meta" / "deduped" / "_stage.json").exists()
        # --wait queues behind the holder, then runs.
        assert main(["dedup", str(job), "--wait", "--no-progress"]) == 0
        assert holder.poll() is not None  # it ran only after the holder had finished
    finally:
        holder.kill()
    assert ids_of(job / "deduped") == ["a1", "a2", "b2"]


def test_the_lock_dies_with_its_process(tmp_path):
    """flock: a killed run leaves no stale lock behind."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from shammie.pipeline.runner import StageLock
        StageLock({str(tmp_path)!r}, "deduped", "dedup").acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(StageRefused, match="another `shammie dedup` is running"):
        StageLock(str(tmp_path), "deduped", "dedup").acquire()
    proc.kill()
    proc.wait()
    StageLock(str(tmp_path), "deduped", "dedup").acquire().release()


def test_an_empty_input_is_an_error_not_an_empty_complete_output(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, {"a.parquet": [], "b.parquet": []})
    assert main(["dedup", str(job), "--no-progress"]) == 2
    assert "holds no documents" in one_line_error(capsys)
    assert not (job / "deduped").exists()
    assert main(["shard", str(job), "--group-by", "site", "--no-progress"]) == 2
    assert "holds no documents" in one_line_error(capsys)


# ---------------------------------------------------------------- crawl re-runs


def test_crawl_input_set_changes_never_mix_old_and_new_outputs(tmp_path, ray_session, example_warcs, capsys):
    files = sorted(str(p) for p in example_warcs.glob("*.warc.gz"))
    job = tmp_path / "job"
    assert crawl_cli(files[0], files[1], "--output", str(job)) == 0
    two = ids_of(job / "documents")
    capsys.readouterr()
    # A file removed from the inputs: refused, nothing changes.
    assert crawl_cli(files[0], "--output", str(job)) == 2
    err = one_line_error(capsys)
    assert "no longer given" in err and "--overwrite" in err
    assert ids_of(job / "documents") == two
    # A file added: the job grows, nothing is redone or duplicated.
    first = next((job / "documents").glob("*.parquet"))
    mtime = first.stat().st_mtime_ns
    assert crawl_cli(*files, "--output", str(job)) == 0
    three = ids_of(job / "documents")
    assert set(two) < set(three) and len(three) == len(set(three))
    assert first.stat().st_mtime_ns == mtime
    assert json.loads((job / "stats.json").read_text())["crawl"]["files"] == 3
    # --overwrite with one file: only that file's rows remain, stats say 1 file.
    assert crawl_cli(files[0], "--output", str(job), "--overwrite") == 0
    assert len(list((job / "documents").glob("*.parquet"))) == 1
    only = ids_of(job / "documents")
    assert set(only) < set(two) and len(only) == len(set(only))
    assert json.loads((job / "stats.json").read_text())["crawl"]["files"] == 1


def test_a_truncated_output_is_redone_on_resume(tmp_path, ray_session, example_warcs):
    from shammie.filters.crawl import crawl

    job = tmp_path / "job"
    first = crawl([str(example_warcs)], str(job), progress=False, workers=2)
    target = sorted((job / "documents").glob("*.parquet"))[1]
    whole = target.read_bytes()
    target.write_bytes(whole[:100])
    again = crawl([str(example_warcs)], str(job), progress=False, workers=2)
    assert target.read_bytes() == whole  # redone (deterministic output), not trusted
    assert again["kept"] == first["kept"]
    # a same-size corruption is caught by the checksum
    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    target.write_bytes(bytes(damaged))
    crawl([str(example_warcs)], str(job), progress=False, workers=2)
    assert target.read_bytes() == whole


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(404)
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args):
        pass


def test_unreadable_inputs_are_counted_and_the_rest_is_written(tmp_path, ray_session, example_warcs):
    from shammie.filters.crawl import crawl

    folder = tmp_path / "warcs"
    folder.mkdir()
    for p in example_warcs.glob("*.warc.gz"):
        (folder / p.name).write_bytes(p.read_bytes())
    os.symlink(tmp_path / "gone.warc.gz", folder / "dangling.warc.gz")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/missing.warc.gz"
        section = crawl([str(folder), url], str(tmp_path / "job"), progress=False, workers=2)
    finally:
        server.shutdown()
    assert section["files"] == 5
    assert section["errors"]["input_unreadable"] == 2
    assert set(section["unreadable_files"]) == {str(folder / "dangling.warc.gz"), url}
    assert section["kept"] > 0 and len(list((tmp_path / "job" / "documents").glob("*.parquet"))) == 5
    assert section["records_read"] == section["kept"] + sum(section["dropped"].values()) + sum(
        section["errors"].values())


# ---------------------------------------------------------------- one-line errors instead of tracebacks


def test_bad_parquet_in_a_document_folder_is_named(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, corpus(), manifest=False)  # a folder without an output manifest (older or hand-made)
    (job / "documents" / "c.parquet").write_bytes(b"PAR1 not really")
    assert main(["dedup", str(job), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "c.parquet is not a readable Parquet file" in err
    (job / "documents" / "c.parquet").unlink()
    documents.write_table(pa.table({"body": ["x"]}), str(job / "documents" / "d.parquet"))
    assert main(["dedup", str(job), "--no-progress"]) == 2
    assert "d.parquet has no id, text column" in one_line_error(capsys)


def test_a_damaged_input_found_by_a_task_is_named(tmp_path, ray_session, capsys):
    job = tmp_path / "job"
    seed_documents(job, corpus())
    path = job / "documents" / "b.parquet"
    raw = bytearray(path.read_bytes())
    raw[8:40] = bytes(32)  # same size, so only reading it shows the damage
    path.write_bytes(bytes(raw))
    assert main(["dedup", str(job), "--no-progress"]) == 2
    assert "b.parquet is not a readable Parquet file" in one_line_error(capsys)


def test_a_stats_file_that_is_not_an_object_is_refused_before_any_work(tmp_path, example_warcs, capsys):
    job = tmp_path / "job"
    job.mkdir()
    (job / "stats.json").write_text("[1, 2]")
    assert crawl_cli(str(example_warcs), "--output", str(job)) == 2
    assert "stats.json is not a JSON object" in one_line_error(capsys)
    assert not (job / "documents").exists()


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, example_warcs, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert crawl_cli(str(example_warcs), "--output", str(blocker / "job")) == 2
    assert "not a directory" in one_line_error(capsys)
    config = tmp_path / "job.yaml"
    config.write_text(f"input: [{example_warcs}]\noutput: {blocker / 'job'}\nshard: {{group_by: site}}\n")
    assert main(["run", str(config), "--dry-run"]) == 2
    assert "not a directory" in one_line_error(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_a_read_only_output_is_refused(tmp_path, example_warcs, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert crawl_cli(str(example_warcs), "--output", str(ro / "job")) == 2
    assert "permission denied" in one_line_error(capsys)


def test_a_full_disk_is_one_line(tmp_path, ray_session, monkeypatch):
    from shammie.dedup import minhash
    from shammie.pipeline import runner

    job = tmp_path / "job"
    seed_documents(job, corpus())

    def full(url, obj):
        raise OSError(errno.ENOSPC, "No space left on device", url)

    monkeypatch.setattr(runner.storage, "write_json_atomic", full)
    with pytest.raises(OutputError, match=r"cannot write .*_stage.json: No space left on device"):
        minhash.dedup(str(job), progress=False)
    assert runner.as_output_error(OSError(errno.EROFS, "Read-only file system", "/x")) is not None
    assert runner.as_output_error(OSError(errno.ENOENT, "gone")) is None  # not an output problem


# ---------------------------------------------------------------- options, configs, secrets


def test_every_stage_option_is_a_config_key(tmp_path):
    from shammie.jobs.config import load_config

    (tmp_path / "warc").mkdir()
    (tmp_path / "q.bin").write_bytes(b"m")
    config = tmp_path / "job.yaml"
    config.write_text(textwrap.dedent("""
        input: [warc]
        output: out
        crawl: {extract_timeout: 5, languages: [en, de]}
        dedup: {threshold: 0.8}
        classify: {enabled: true, model: q.bin, column: dclm}
        shard: {group_by: dclm, shard_tokens: 1000000, seq_len: 512}
    """))
    cfg = load_config(str(config))
    assert cfg.options["dedup"][0].threshold == 0.8
    assert cfg.options["crawl"][0].extract_timeout == 5.0
    assert cfg.options["shard"][0].shard_tokens == 1_000_000 and cfg.options["shard"][0].group_by == "dclm"
    assert cfg.options["classify"][0].column == "dclm"


def test_config_mistakes_are_found_before_the_first_stage(tmp_path, capsys):
    (tmp_path / "warc").mkdir()
    config = tmp_path / "job.yaml"
    config.write_text("input: [warc]\noutput: out\ncrawl: {languages: [en, no]}\nshard: {group_by: sit}\n")
    assert main(["run", str(config)]) == 2
    err = capsys.readouterr().err
    assert "crawl.languages[1]: got the boolean False" in err and "quote it" in err
    assert "shard.group_by: 'sit': no such column" in err
    assert not (tmp_path / "out").exists()


def test_edu_scores_round_the_same_way_in_the_store_and_the_score_column():
    from shammie.filters.edu_metrics import int_scores
    from shammie.mixing.domains import raw_domain_keys as domain_keys

    scores = [0.49, 0.5, 1.5, 2.5, 3.5, 4.5, 5.7]
    table = pa.table({"text": ["t"] * len(scores), "edu_score": scores})
    assert domain_keys(table, "edu") == [f"edu-{int(v)}" for v in int_scores(scores)]
    assert domain_keys(table, "edu")[3] == "edu-3"  # 2.5 rounds half up, as edu_int_score does


def test_secrets_stay_out_of_ray_metadata_stats_markers_and_logs(tmp_path, ray_session, example_warcs, monkeypatch,
                                                                capfd):
    from shammie.pipeline import parallel
    from shammie.filters.crawl import crawl

    secrets = {"AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-8d1f", "AWS_SESSION_TOKEN": "aws-t0ken-77aa",
               "SHAMMIE_LLM_API_KEY": "llm-k3y-93b2"}
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SHAMMIE_SOME_SETTING", "on")  # a setting: forwarded
    env = parallel.forwarded_env()
    assert env.get("SHAMMIE_SOME_SETTING") == "on"
    assert not set(secrets.values()) & set(env.values()) and not set(secrets) & set(env)
    import ray

    real_remote = ray.remote
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("runtime_env"))
        return real_remote(*args, **kwargs)

    monkeypatch.setattr(ray, "remote", spy)
    crawl([str(example_warcs)], str(tmp_path / "job"), progress=True, workers=2)
    out = capfd.readouterr()
    assert seen and all(not set(secrets.values()) & set((e or {}).get("env_vars", {}).values()) for e in seen)
    texts = [out.out, out.err]
    for root, _, names in os.walk(tmp_path / "job"):
        for name in names:
            path = Path(root) / name
            if path.suffix in (".json", ".yaml", ".lock") or name == jobdir.SUCCESS:
                texts.append(path.read_text(errors="replace"))
    for value in secrets.values():
        assert not any(value in t for t in texts), value


def test_library_code_raises_library_errors_not_the_cli_error():
    """Only CLI modules (*_cli.py, jobs/config.py) raise UserError; libraries raise ValueError/RuntimeError kinds."""
    offenders = []
    for folder in ("pipeline", "dedup", "filters", "mixing"):
        for path in (REPO / folder).glob("*.py"):
            if path.name.endswith("_cli.py") or path.name == "cli.py":
                continue
            if "raise UserError(" in path.read_text():
                offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == [], offenders
