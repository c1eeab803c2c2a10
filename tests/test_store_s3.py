"""Shard store on S3 (a moto server on 127.0.0.1): build, stream + cache shards, checksum errors."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from shammie.mixing.store import CorruptShardError, build_store, open_store
from shammie.mixing.store_testing import synthetic_documents, write_job
from shammie.pipeline import jobdir


def test_store_on_s3_round_trips_and_caches_shards(tmp_path, s3_bucket):
    import boto3

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(200, seed=21)])
    url = f"s3://{s3_bucket}/stores/edu"
    stats = build_store(str(job), url, group_by="edu", train_tokenizer=400, progress=False,
                        shard_tokens=6_000, tokenizer_sample_bytes=1_000_000, seq_len=32)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="stores/edu/")["Contents"]}
    assert "stores/edu/manifest.json" in keys
    assert not any("/_staging/" in k or "/.tmp-" in k for k in keys)

    cache = tmp_path / "cache"
    store = open_store(url, cache_dir=str(cache))
    assert not any(cache.rglob("*.tokens")), "nothing is downloaded before it is needed"
    rows = pq.read_table(jobdir.stage_files(str(job), "scored")[0]).to_pylist()
    texts = {r["id"]: r["text"] for r in rows}
    assert sum(store.num_documents(d) for d in store.domains) == len(rows) == stats["documents"]
    d = store.domains[0]
    first = store.document_record(d, 0)
    assert first["text"] == texts[first["id"]]
    assert store.decode(store.document_tokens(d, 0)) == first["text"]
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file())
    # Only the shard(s) touched were fetched (plus the tokenizer for decode).
    assert len(cached) < sum(3 * len(store.domain_info(x)["shards"]) for x in store.domains)
    seqs = list(store.sequences(d, 32, seed=1))
    assert len(seqs) == store.num_sequences(d, 32) > 0
    stream = np.concatenate([store.document_tokens(d, i) for i in range(store.num_documents(d))])
    assert sorted(map(tuple, seqs)) == sorted(tuple(stream[j * 32:(j + 1) * 32]) for j in range(len(seqs)))

    # A second reader with the same cache uses the cached (re-verified) copies.
    again = open_store(url, cache_dir=str(cache))
    assert again.document(d, 0) == first["text"]

    # A truncated object on S3 is reported with its URL when a fresh cache fetches it.
    manifest = store.manifest
    victim = manifest["domains"][d]["shards"][0]["files"]["tokens"]["path"]
    body = s3.get_object(Bucket=s3_bucket, Key=f"stores/edu/{victim}")["Body"].read()
    s3.put_object(Bucket=s3_bucket, Key=f"stores/edu/{victim}", Body=body[:-8])
    broken = open_store(url, cache_dir=str(tmp_path / "cache2"))
    with pytest.raises(CorruptShardError, match=victim.split("/")[-1]) as err:
        broken.sequence(d, 32, 0)
    assert url in str(err.value)
    assert not any((tmp_path / "cache2").rglob("*.tokens")), "a bad download is not kept in the cache"


def test_store_on_s3_built_by_workers_holds_only_its_files(tmp_path, s3_bucket, ray_session):
    """Count files, pieces and merges on S3 through Ray workers: only the manifest's files remain."""
    import boto3

    from shammie.mixing import domains as dom

    job = tmp_path / "job"
    write_job(str(job), [synthetic_documents(80, seed=s, prefix=f"f{s}") for s in range(3)])
    url = f"s3://{s3_bucket}/stores/site"
    stats = build_store(str(job), url, group_by="site", top_k=3, train_tokenizer=400, progress=False,
                        tokenizer_sample_bytes=1_000_000, seq_len=32)
    assert stats["documents"] == 240 and stats["pieces"]["tasks"] == 3 and stats["pieces"]["merged"] > 0
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = {o["Key"][len("stores/site/"):] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="stores/site/")["Contents"]}
    store = open_store(url, cache_dir=str(tmp_path / "cache"))
    listed = {f["path"] for d in store.domains for s in store.domain_info(d)["shards"] for f in s["files"].values()}
    assert keys == listed | {store.manifest["tokenizer"]["path"], "manifest.json", "_SUCCESS",
                             f"_builds/{store.build_id}.json"}
    rows = [r for u in jobdir.stage_files(str(job), "scored") for r in pq.read_table(u).to_pylist()]
    from collections import Counter

    folder = dom.DomainFolder(Counter(dom.registered_site(r["url"]) for r in rows), "site", 3)
    for d in store.domains:
        assert [r["id"] for r in store.iter_documents(d, ["id"])] == \
            [r["id"] for r in rows if folder(dom.registered_site(r["url"])) == d]
    assert store.verify() == len(listed) + 1
