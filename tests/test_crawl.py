"""The crawl stage: funnel accounting, each filter, resume, worker death, S3/cc: input, bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from shammie.pipeline import jobdir
from shammie.filters.crawl import crawl
from warc_fixtures import FixturePage, english_paragraphs, gzip_chunked_page, html_page, pages_for_each_filter, write_warc


def read_documents(job: Path) -> dict[str, list[dict]]:
    out = {}
    for p in sorted((job / "documents").glob("*.parquet")):
        out[p.name] = pq.read_table(p).to_pylist()
    return out


def funnel_adds_up(section: dict) -> bool:
    return section["records_read"] == section["kept"] + sum(section["dropped"].values()) + sum(section["errors"].values())


@pytest.fixture(scope="module")
def filter_fixture(tmp_path_factory):
    d = tmp_path_factory.mktemp("warcs")
    pages = pages_for_each_filter(seed=1, good=3)
    counts = write_warc(d / "a.warc.gz", pages)
    return d, pages, counts


def test_each_filter_drops_the_page_built_to_fail_it(ray_session, filter_fixture, tmp_path):
    warcs, pages, counts = filter_fixture
    section = crawl([str(warcs)], str(tmp_path / "job"), keep_removed=True, progress=False)

    removed = pq.read_table(next((tmp_path / "job" / "removed").glob("*.parquet"))).to_pylist()
    reason_by_id = {r["id"]: r["reason"] for r in removed}
    for page in pages:
        if page.expect == "kept":
            assert page.record_id not in reason_by_id
        else:
            assert reason_by_id.get(page.record_id) == page.expect, page.url
    kept = [row for rows in read_documents(tmp_path / "job").values() for row in rows]
    assert sorted(r["id"] for r in kept) == sorted(p.record_id for p in pages if p.expect == "kept")
    assert {r["language"] for r in kept} == {"en"}
    assert all(r["language_score"] > 0.65 and r["dump"] == "CC-MAIN-2024-22" for r in kept)
    assert all(r["warc_offset"] > 0 and r["warc_file"].endswith("a.warc.gz") for r in kept)

    # the funnel accounts for every record, and stats.json holds the same section
    assert funnel_adds_up(section)
    assert section["records_read"] == sum(counts.values())
    assert section["html_responses"] == len(pages)
    assert section["kept"] == 3
    for name in ("url_filter", "short_page", "extraction_empty", "short_text", "language", "gopher_repetition",
                 "gopher_quality", "c4_quality", "fineweb_quality"):
        assert section["dropped"][name] == 1, name
    assert section["dropped"]["not_html"] == counts["non_html"]
    assert section["dropped"]["record_request"] == counts["request"]
    assert json.loads((tmp_path / "job" / "stats.json").read_text())["crawl"]["kept"] == 3
    assert jobdir.is_complete(str(tmp_path / "job"), "documents")


def test_pii_is_anonymised(ray_session, tmp_path):
    paragraphs = english_paragraphs(7)
    paragraphs[1] += " Write to jane.doe@university-mail.com or connect to 8.8.8.8 for the archive."
    page = FixturePage("http://www.pii-example.org/contact", html_page(paragraphs), "kept")
    write_warc(tmp_path / "p.warc.gz", [page], extra_records=False)
    crawl([str(tmp_path / "p.warc.gz")], str(tmp_path / "job"), progress=False)
    (row,) = [r for rows in read_documents(tmp_path / "job").values() for r in rows]
    assert "jane.doe@university-mail.com" not in row["text"] and "8.8.8.8" not in row["text"]
    assert "@example.com" in row["text"] or "@example.org" in row["text"]


def test_resume_skips_finished_files_and_gives_identical_output(ray_session, tmp_path):
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    for i in range(3):
        write_warc(warcs / f"part-{i}.warc.gz", pages_for_each_filter(seed=10 + i, good=2))
    job = tmp_path / "job"
    first = crawl([str(warcs)], str(job), progress=False)
    before = read_documents(job)
    assert len(before) == 3

    # an interrupted run: one file's output and marker never got written
    victim = sorted((job / "documents").glob("*.parquet"))[1]
    victim.unlink()
    (job / "_meta" / "documents" / "_tasks" / (victim.stem + ".json")).unlink()
    jobdir.clear_complete(str(job), "documents")
    untouched = sorted((job / "documents").glob("*.parquet"))[0]
    mtime = untouched.stat().st_mtime_ns

    second = crawl([str(warcs)], str(job), progress=False)
    assert read_documents(job) == before
    assert untouched.stat().st_mtime_ns == mtime  # finished files were skipped, not redone
    for key in ("records_read", "kept", "dropped", "errors"):
        assert second[key] == first[key]
    # no temporary files left behind
    assert not [p for p in (job / "documents").iterdir() if p.name.startswith(".tmp")]


def test_changed_settings_are_refused_not_mixed(ray_session, filter_fixture, tmp_path):
    from shammie.pipeline.errors import StageRefused

    warcs, _, _ = filter_fixture
    crawl([str(warcs)], str(tmp_path / "job"), progress=False)
    with pytest.raises(StageRefused, match=r"settings changed \(language_threshold: 0.65 -> 0.9\)"):
        crawl([str(warcs)], str(tmp_path / "job"), language_threshold=0.9, progress=False)


def _ray_task_processes():
    """Crawl task workers of THIS test session's Ray only: the in-process local Ray's workers are
    descendants of this process, so another job's workers on the same machine are never picked
    (a name match machine-wide killed other people's jobs)."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline() or [])
            name = proc.name() or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if "ray::_run_and_mark" in cmd or "ray::_run_and_mark" in name:
            found.append(proc)
    return found


def test_victims_are_only_this_sessions_workers():
    """A process of another job named like a crawl worker is never chosen to be killed."""
    import subprocess

    out = subprocess.run(["bash", "-c", 'exec -a "ray::_run_and_mark" sleep 60 >/dev/null 2>&1 & echo $!'],
                         capture_output=True, text=True, check=True)
    stranger = int(out.stdout.strip())  # reparented to init when bash exits: not our descendant
    try:
        assert stranger not in [p.pid for p in _ray_task_processes()]
    finally:
        os.kill(stranger, 9)


@pytest.mark.slow
def test_worker_killed_mid_run_gives_the_same_output(ray_session, tmp_path):
    if os.environ.get("SHAMMIE_TEST_RAY_ADDRESS"):
        pytest.skip("the victim must be a worker of this session's own Ray (not an external cluster's)")
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    for i in range(2):
        pages = [FixturePage(f"http://www.site-{i}-{k}.org/a", html_page(english_paragraphs(1000 * i + k)), "kept")
                 for k in range(60)]
        write_warc(warcs / f"big-{i}.warc.gz", pages)
    reference = crawl([str(warcs)], str(tmp_path / "reference"), progress=False)

    killed = []
    errors = []

    def run():
        try:
            crawl([str(warcs)], str(tmp_path / "job"), progress=False)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while not killed and time.time() < deadline and thread.is_alive():
        procs = _ray_task_processes()
        if procs:
            time.sleep(0.5)  # let it get into the file
            procs[0].kill()
            killed.append(procs[0].pid)
        time.sleep(0.05)
    thread.join(timeout=300)
    assert not errors, errors
    assert killed, "no running crawl task was found to kill"
    assert read_documents(tmp_path / "job") == read_documents(tmp_path / "reference")
    stats = json.loads((tmp_path / "job" / "stats.json").read_text())["crawl"]
    assert stats["kept"] == reference["kept"] == 120


def test_s3_prefix_and_cc_snapshot_inputs(ray_session, s3_server, s3_bucket, filter_fixture, tmp_path):
    import boto3

    warcs, pages, _ = filter_fixture
    s3 = boto3.client("s3", endpoint_url=s3_server)
    data = (warcs / "a.warc.gz").read_bytes()
    s3.put_object(Bucket=s3_bucket, Key="crawl/segment-1/a.warc.gz", Body=data)
    s3.put_object(Bucket=s3_bucket, Key="crawl/segment-1/readme.txt", Body=b"not a warc")

    section = crawl([f"s3://{s3_bucket}/crawl/"], str(tmp_path / "from-s3"), progress=False)
    kept = [r for rows in read_documents(tmp_path / "from-s3").values() for r in rows]
    assert sorted(r["id"] for r in kept) == sorted(p.record_id for p in pages if p.expect == "kept")
    assert kept[0]["warc_file"] == f"s3://{s3_bucket}/crawl/segment-1/a.warc.gz"
    assert section["files"] == 1

    # cc:SNAPSHOT reads warc.paths.gz from the (here: local stand-in) commoncrawl bucket, unsigned
    try:
        s3.create_bucket(Bucket="commoncrawl")
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    keys = [f"crawl-data/CC-MAIN-2099-01/segments/1/warc/w-{i}.warc.gz" for i in range(3)]
    # public objects, like the real bucket's: Shammie reads them with unsigned requests
    s3.put_object(Bucket="commoncrawl", Key="crawl-data/CC-MAIN-2099-01/warc.paths.gz", ACL="public-read",
                  Body=gzip.compress(("\n".join(keys) + "\n").encode()))
    for key in keys:
        s3.put_object(Bucket="commoncrawl", Key=key, Body=data, ACL="public-read")
    section = crawl(["cc:CC-MAIN-2099-01"], str(tmp_path / "from-cc"), limit_files=2, progress=False)
    assert section["files"] == 2
    files = {r["warc_file"] for rows in read_documents(tmp_path / "from-cc").values() for r in rows}
    assert files == {f"s3://commoncrawl/{k}" for k in keys[:2]}


def _member_offsets(path: Path) -> list[int]:
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        return [it.offset for _ in it]


def test_bad_input_is_counted_and_the_rest_still_processed(ray_session, tmp_path):
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    good = [FixturePage(f"http://www.good-{k}.org/a", html_page(english_paragraphs(500 + k)), "kept") for k in range(6)]

    # a gzip member corrupted in the middle of the file: records before and after it survive
    write_warc(warcs / "corrupt.warc.gz", good, extra_records=False)
    raw = bytearray((warcs / "corrupt.warc.gz").read_bytes())
    offsets = _member_offsets(warcs / "corrupt.warc.gz")
    # members: warcinfo, then (request, response) per page; damage page 2's response
    start, end = offsets[6], offsets[7]
    raw[start + 40:end - 40] = bytes(len(raw[start + 40:end - 40]))
    (warcs / "corrupt.warc.gz").write_bytes(bytes(raw))

    # a file cut short in the last page
    write_warc(warcs / "truncated.warc.gz", good[:2], extra_records=False)
    whole = (warcs / "truncated.warc.gz").read_bytes()
    (warcs / "truncated.warc.gz").write_bytes(whole[: len(whole) - 300])

    (warcs / "empty.warc.gz").write_bytes(b"")
    (warcs / "garbage.warc.gz").write_bytes(gzip.compress(os.urandom(2000)))
    (warcs / "chunked.warc").write_bytes(gzip_chunked_page("http://www.chunked.org/a", html_page(english_paragraphs(77)),
                                                           "<urn:uuid:chunked-page>"))
    section = crawl([str(warcs)], str(tmp_path / "job"), progress=False)
    assert funnel_adds_up(section)
    # one error per damaged thing: the corrupt member (once, not also as its neighbour), the
    # zero-byte file (once counted nothing) and the gzip of random bytes (not a WARC)
    assert section["errors"] == {"unparseable_record": 1, "empty_file": 1, "not_warc": 1}
    assert section["warnings"] == {"truncated_record": 1}
    kept_ids = {r["id"] for rows in read_documents(tmp_path / "job").values() for r in rows}
    corrupt_ids = {p.record_id for p in good}
    assert corrupt_ids - {good[2].record_id} <= kept_ids  # pages before and after the damage
    assert good[2].record_id not in kept_ids
    assert "<urn:uuid:chunked-page>" in kept_ids  # chunked + gzip body decoded
    assert section["files"] == 5


def test_missing_input_is_a_clear_error_before_any_work(tmp_path, capsys):
    from shammie.jobs.cli import main

    code = main(["crawl", str(tmp_path / "nope.warc.gz"), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.warc.gz" in err and "does not exist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_largest_files_are_planned_first(tmp_path):
    """Ray runs tasks in the order they are submitted: a big file left for last would keep one
    worker busy while the others idle. Equal sizes keep the listing's order."""
    from shammie.filters.crawl import CrawlOptions, CrawlStage

    sizes = {"a.warc.gz": 10, "b.warc.gz": 3000, "c.warc.gz": 10, "d.warc.gz": 700}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    job = str(tmp_path / "job")
    stage = CrawlStage(job, CrawlOptions(inputs=[str(tmp_path)], output=job))
    tasks = stage.plan(stage.resolve_inputs(), job)
    assert [t.payload["url"].rsplit("/", 1)[-1] for t in tasks] == ["b.warc.gz", "d.warc.gz", "a.warc.gz", "c.warc.gz"]
