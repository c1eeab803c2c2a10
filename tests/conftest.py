"""Shared fixtures: one local Ray for the whole session, a moto S3 server, the
real third-party data folder (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Test helper modules (e.g. warc_fixtures) are imported by plain name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_DATA = Path(os.environ.get("SHAMMIE_SHARED_DATA", REPO.parent / "shared" / "data"))
# Credentials never travel in a task's runtime_env (they would land in Ray's metadata):
# workers inherit them from the environment Ray starts in, as on a real machine. The moto
# server started later accepts any, so test ones are set before any test can start a Ray
# (the session's, or one a stage starts itself).
for _key, _value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                     ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real third-party data not found at {SHARED_DATA} (set SHAMMIE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (ray.init takes ~15 s here).

    SHAMMIE_TEST_RAY_ADDRESS=host:port runs the tests on an already-started Ray instead."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("SHAMMIE_TEST_RAY_ADDRESS")
    if not ray.is_initialized():
        for attempt in range(3):  # a raylet can miss its start-up deadline on a loaded machine
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
                break
            except Exception:
                ray.shutdown()
                if attempt == 2:
                    raise
                time.sleep(5)
    yield ray
    ray.shutdown()


def dedup_killed_before_clusters(job, monkeypatch, **options) -> None:
    """Run `minhash.dedup` on `job` with a driver that dies once the buckets are written."""
    from shammie.dedup import minhash
    from shammie.pipeline import parallel

    real = parallel.run_tasks

    def die_at_clusters(job_, stage, *a, **k):
        if k["markers"].endswith("clusters"):
            raise RuntimeError("driver killed")
        return real(job_, stage, *a, **k)

    monkeypatch.setattr(parallel, "run_tasks", die_at_clusters)
    with pytest.raises(RuntimeError, match="driver killed"):
        minhash.dedup(str(job), progress=False, **options)
    monkeypatch.setattr(parallel, "run_tasks", real)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 endpoint on 127.0.0.1; yields its URL and sets AWS_* env vars."""
    pytest.importorskip("moto")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    old = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    yield url
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the moto server; yields its name."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name
