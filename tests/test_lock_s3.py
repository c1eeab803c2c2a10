"""The job lock on S3 (a moto server on 127.0.0.1): conditional writes make it exclusive.

Two runs that start together both see no lock; only a conditional create (`If-None-Match: *`)
lets exactly one of them write it. The races are made deterministic by delaying the second
run's PUT requests (a botocore hook on the shared s3fs client), the way a slow network does:
with the plain write-then-read-back lock both runs then believe they hold it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from shammie.pipeline import runner, storage
from shammie.pipeline.errors import StageRefused

# Both runs read before either write lands; the first run's write then lands after the second
# one has read its own back (the plain lock's check), so both would believe they hold it.
FIRST_DELAY_S, SECOND_DELAY_S = 2.0, 0.5


def s3_client(url: str):
    """The botocore client of the s3fs instance the storage layer uses for `url`."""
    import fsspec.asyn

    fs, _ = storage.get_fs(url)
    fsspec.asyn.sync(fs.loop, fs.set_session)
    return fs.s3


@pytest.fixture
def delayed_puts(s3_bucket):
    """delay(run_id, seconds, creates=True): that run's PUT requests of its lock reach the store late
    (with creates=False, not its conditional creates: only its plain or If-Match writes)."""
    client = s3_client(f"s3://{s3_bucket}/job")
    delays: dict[bytes, tuple[float, bool]] = {}

    async def hold_back(request, **_kwargs):
        body = request.body.getvalue() if hasattr(request.body, "getvalue") else bytes(request.body or b"")
        for run, (seconds, creates) in delays.items():
            if run in body and (creates or "If-None-Match" not in request.headers):
                await asyncio.sleep(seconds)

    client.meta.events.register("before-send.s3.PutObject", hold_back)
    yield lambda run_id, seconds, creates=True: delays.__setitem__(run_id.encode(), (seconds, creates))
    client.meta.events.unregister("before-send.s3.PutObject", hold_back)


def race(*locks: runner.StageLock) -> list[object]:
    """Acquire every lock at the same moment, each in its own thread; the outcome of each."""
    outcomes: list[object] = [None] * len(locks)
    barrier = threading.Barrier(len(locks))

    def take(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = locks[i].acquire()
        except StageRefused as e:
            outcomes[i] = e

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(locks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def lock_object(bucket: str) -> dict | None:
    return storage.read_json(f"s3://{bucket}/job/_locks/deduped.lock")


def release_all(*locks: runner.StageLock) -> None:
    for lock in locks:
        lock.release()


def test_of_two_runs_starting_together_exactly_one_takes_the_lock(s3_bucket, delayed_puts):
    job = f"s3://{s3_bucket}/job"
    first, second = (runner.StageLock(job, "deduped", "dedup") for _ in range(2))
    delayed_puts(first.owner["run"], FIRST_DELAY_S)
    delayed_puts(second.owner["run"], SECOND_DELAY_S)
    try:
        outcomes = race(first, second)
        winners = [o for o in outcomes if isinstance(o, runner.StageLock)]
        assert len(winners) == 1, f"both runs hold the lock: {outcomes}"
        assert isinstance(outcomes[0], StageRefused) and "is running on" in str(outcomes[0])
        assert lock_object(s3_bucket)["run"] == second.owner["run"]
    finally:
        release_all(first, second)
    assert lock_object(s3_bucket) is None, "the holder's release removes the lock"


def test_a_stale_lock_is_taken_over_by_exactly_one_run(s3_bucket, delayed_puts):
    job = f"s3://{s3_bucket}/job"
    dead = {"host": "gone", "pid": 1, "run": "dead-run", "since": "then",
            "heartbeat": time.time() - runner.STALE_AFTER_S - 60}
    storage.write_json_atomic(f"{job}/_locks/deduped.lock", dead)
    first, second = (runner.StageLock(job, "deduped", "dedup") for _ in range(2))
    # both read the stale lock (same ETag) before either replaces it: If-Match lets only one replace it
    delayed_puts(first.owner["run"], FIRST_DELAY_S, creates=False)
    delayed_puts(second.owner["run"], SECOND_DELAY_S, creates=False)
    try:
        outcomes = race(first, second)
        winners = [o for o in outcomes if isinstance(o, runner.StageLock)]
        assert len(winners) == 1, f"both runs took over the stale lock: {outcomes}"
        assert lock_object(s3_bucket)["run"] == winners[0].owner["run"]
    finally:
        release_all(first, second)


def test_a_fresh_lock_is_not_taken_over_and_wait_queues_behind_it(s3_bucket):
    job = f"s3://{s3_bucket}/job"
    holder = runner.StageLock(job, "deduped", "dedup").acquire()
    try:
        with pytest.raises(StageRefused, match=f"pid {holder.owner['pid']}"):
            runner.StageLock(job, "deduped", "dedup").acquire()
        waiter = runner.StageLock(job, "deduped", "dedup", wait=True, poll_s=0.1)
        taken = threading.Event()
        thread = threading.Thread(target=lambda: (waiter.acquire(), taken.set()))
        thread.start()
        time.sleep(1.0)
        assert not taken.is_set(), "the waiting run took a held lock"
    finally:
        holder.release()
    thread.join(timeout=30)
    assert taken.is_set() and lock_object(s3_bucket)["run"] == waiter.owner["run"]
    waiter.release()


def test_the_heartbeat_notices_a_takeover_and_release_leaves_the_new_holders_lock(s3_bucket, monkeypatch):
    monkeypatch.setattr(runner, "HEARTBEAT_S", 0.2)
    job = f"s3://{s3_bucket}/job"
    warnings: list[str] = []
    lock = runner.StageLock(job, "deduped", "dedup", warn=warnings.append).acquire()
    first = lock_object(s3_bucket)["heartbeat"]
    time.sleep(0.7)
    assert lock_object(s3_bucket)["heartbeat"] > first, "the heartbeat is refreshed"
    other = {"host": "h", "pid": 2, "run": "other-run", "since": "now", "heartbeat": time.time()}
    storage.write_json_atomic(f"{job}/_locks/deduped.lock", other)  # as a takeover after a long stall would
    deadline = time.monotonic() + 10
    while not lock.lost and time.monotonic() < deadline:
        time.sleep(0.1)
    lock.release()
    assert lock.lost and any("taken over" in w for w in warnings), warnings
    assert lock_object(s3_bucket)["run"] == "other-run", "release deleted another run's lock"


@pytest.fixture
def conditions_ignored(s3_bucket):
    """A store that accepts If-None-Match / If-Match and ignores them (as older S3-compatible stores do)."""
    client = s3_client(f"s3://{s3_bucket}/job")

    def drop_conditions(params, **_kwargs):
        params.pop("IfNoneMatch", None)
        params.pop("IfMatch", None)

    client.meta.events.register("before-parameter-build.s3.PutObject", drop_conditions)
    client.meta.events.register("before-parameter-build.s3.DeleteObject", drop_conditions)
    yield
    client.meta.events.unregister("before-parameter-build.s3.PutObject", drop_conditions)
    client.meta.events.unregister("before-parameter-build.s3.DeleteObject", drop_conditions)


def test_a_store_without_conditional_writes_falls_back_with_a_warning(s3_bucket, conditions_ignored):
    job = f"s3://{s3_bucket}/job"
    assert not storage.supports_conditional_writes(f"{job}/_locks/deduped.lock")
    warnings: list[str] = []
    lock = runner.StageLock(job, "deduped", "dedup", warn=warnings.append).acquire()
    try:
        assert len(warnings) == 1 and "does not support conditional writes" in warnings[0]
        assert "best effort" in warnings[0]
        assert lock_object(s3_bucket)["run"] == lock.owner["run"]
        with pytest.raises(StageRefused):
            runner.StageLock(job, "deduped", "dedup", warn=warnings.append).acquire()
    finally:
        lock.release()
    assert lock_object(s3_bucket) is None
    assert not [k for k in storage.listdir(f"{job}/_locks") if "probe" in k], "the probe object is left behind"


def test_conditional_writes_are_detected_on_moto(s3_bucket):
    url = f"s3://{s3_bucket}/job/_locks/x.lock"
    assert storage.supports_conditional_writes(url)
    etag = storage.create_exclusive(url, b"a")
    assert etag and storage.create_exclusive(url, b"b") is None
    assert storage.read_with_etag(url) == (b"a", etag)
    newer = storage.replace_if_match(url, b"c", etag)
    assert newer and newer != etag and storage.replace_if_match(url, b"d", etag) is None
    assert not storage.delete_if_match(url, etag) and storage.delete_if_match(url, newer)
    assert storage.read_with_etag(url) is None
