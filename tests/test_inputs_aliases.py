"""Inputs named through several paths are crawled once, and recursive globs end on symlink loops."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shammie.pipeline.inputs import resolve_inputs
from warc_fixtures import pages_for_each_filter, write_warc


@pytest.fixture
def aliased(tmp_path):
    """One WARC file reachable as itself, through a symlink and through a hard link."""
    folder = tmp_path / "warcs"
    folder.mkdir()
    kept = [p for p in pages_for_each_filter(seed=31, good=6) if p.expect == "kept"]
    write_warc(folder / "a.warc.gz", kept)
    os.symlink("a.warc.gz", folder / "b-link.warc.gz")
    os.link(folder / "a.warc.gz", folder / "c-hard.warc.gz")
    return folder, kept


def test_the_same_file_through_a_symlink_and_a_hard_link_is_one_input_named_in_a_warning(aliased, capsys):
    folder, _ = aliased
    assert resolve_inputs([str(folder)]) == [str(folder / "a.warc.gz")]
    err = capsys.readouterr().err
    assert "b-link.warc.gz" in err and "c-hard.warc.gz" in err and "crawled once" in err
    # the same through a glob, and the file given twice by two spellings
    assert resolve_inputs([str(folder / "*.warc.gz"), f"{folder}/./b-link.warc.gz"]) == [str(folder / "a.warc.gz")]


@pytest.mark.slow
def test_a_crawl_of_the_aliased_folder_writes_each_page_once(aliased, tmp_path, ray_session):
    from shammie.pipeline import documents, jobdir
    from shammie.filters.crawl import crawl

    folder, kept = aliased
    section = crawl([str(folder)], str(tmp_path / "job"), progress=False)
    ids = [i for f in jobdir.stage_files(str(tmp_path / "job"), "documents")
           for i in documents.read_table(f).column("id").to_pylist()]
    assert section["files"] == 1
    assert sorted(ids) == sorted(p.record_id for p in kept) and len(ids) == len(kept) == 6


def test_a_recursive_glob_through_symlink_loops_returns_each_file_once(tmp_path):
    folder = tmp_path / "loop"
    (folder / "sub").mkdir(parents=True)
    write_warc(folder / "sub" / "x.warc.gz", [p for p in pages_for_each_filter(seed=3, good=1) if p.expect == "kept"])
    os.symlink("..", folder / "sub" / "up")        # two loops: glob.glob walks 2^40 paths
    os.symlink("../..", folder / "sub" / "top")
    code = ("import sys; from shammie.pipeline.inputs import resolve_inputs; "
            f"print(resolve_inputs([{str(folder / '**' / '*.warc.gz')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr([str(folder / "sub" / "x.warc.gz")])


def test_two_s3_keys_with_the_same_bytes_are_one_input(s3_server, s3_bucket, tmp_path, capsys):
    import boto3

    body = (tmp_path / "x.warc.gz")
    write_warc(body, [p for p in pages_for_each_filter(seed=5, good=1) if p.expect == "kept"])
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for key in ("crawl/a.warc.gz", "crawl/copy/a.warc.gz", "crawl/other.warc.gz"):
        data = body.read_bytes() if key != "crawl/other.warc.gz" else body.read_bytes() + b"\0"
        s3.put_object(Bucket=s3_bucket, Key=key, Body=data)
    urls = resolve_inputs([f"s3://{s3_bucket}/crawl/"])
    assert urls == [f"s3://{s3_bucket}/crawl/a.warc.gz", f"s3://{s3_bucket}/crawl/other.warc.gz"]
    assert f"s3://{s3_bucket}/crawl/copy/a.warc.gz" in capsys.readouterr().err
