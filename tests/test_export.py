"""`shammie export`: Megatron's indexed dataset read back by megatron-core, the HF folder by `datasets`."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from shammie.mixing import export as export_mod
from shammie.mixing.export import ExportError, data_path_line, export_store
from shammie.mixing.store import build_store, open_store
from shammie.mixing.store_testing import synthetic_documents, tiny_tokenizer, write_job, write_token_store
from shammie.pipeline import jobdir
from shammie.pipeline.errors import ShammieError


def _megatron():
    """megatron-core's reader (megatron-core needs torch, so it comes with the torch extra)."""
    with warnings.catch_warnings():
        # importing megatron.core warns that Transformer Engine and Apex are absent (CPU machine)
        warnings.simplefilter("ignore")
        return pytest.importorskip("megatron.core.datasets.indexed_dataset",
                                   reason="megatron-core is installed with the torch extra (it requires torch)")


def _random_documents(seed: int, count: int, low: int = 3, high: int = 390, max_len: int = 80) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(low, high, rng.integers(1, max_len)).astype(np.uint16) for _ in range(count)]


@pytest.fixture(scope="module")
def token_store(tmp_path_factory):
    """Three domains of different sizes; small shards so every domain spans several shards."""
    root = tmp_path_factory.mktemp("tokstore") / "store"
    domains = {"edu-2": _random_documents(1, 700), "edu-3": _random_documents(2, 250), "news.example.co.uk":
               _random_documents(3, 40)}
    write_token_store(str(root), domains, shard_tokens=4000)
    return root


def _store_lengths(store, domain: str) -> np.ndarray:
    return np.array([len(store.document_tokens(domain, i)) for i in range(store.num_documents(domain))])


# ---------------------------------------------------------------- megatron


def test_megatron_export_has_the_stores_tokens_and_document_boundaries(token_store, tmp_path):
    indexed = _megatron()
    out = tmp_path / "megatron"
    record = export_store(str(token_store), str(out), "megatron")
    store = open_store(str(token_store))
    assert all(len(store.domain_info(d)["shards"]) > 1 for d in store.domains[:2])  # pointers cross shard ends
    for domain in store.domains:
        prefix = str(out / domain)
        assert indexed.IndexedDataset.exists(prefix)
        ds = indexed.IndexedDataset(prefix)
        n = store.num_documents(domain)
        assert len(ds) == n
        assert ds.index.dtype == np.uint16
        # one Megatron document per store document, each a single sequence
        assert ds.document_indices.tolist() == list(range(n + 1))
        assert ds.sequence_lengths.tolist() == _store_lengths(store, domain).tolist()
        for i in range(n):
            got = ds[i]
            assert got.tolist() == store.document_tokens(domain, i).tolist()
            assert got[-1] == store.eod_id  # the store's end-of-document id is kept, as --append-eod writes it
        # the contiguous-slice path reads across documents the same way
        assert [a.tolist() for a in ds[3:9]] == [store.document_tokens(domain, i).tolist() for i in range(3, 9)]
        assert record["domains"][domain] == {"documents": n, "tokens": store.num_tokens(domain),
                                             "files": [f"{domain}.bin", f"{domain}.idx"]}
    assert (out / "tokenizer.model").read_bytes() == Path(store.tokenizer_path).read_bytes()
    assert record["tokens"] == store.manifest["tokens"] and record["tokens_per_s"] > 0
    assert json.loads((out / "export.json").read_text())["data_path"] == record["data_path"]


def test_data_path_weights_are_token_shares_and_megatron_parses_them(token_store, tmp_path):
    _megatron()
    from megatron.core.datasets.utils import get_blend_from_list

    out = tmp_path / "megatron"
    record = export_store(str(token_store), str(out), "megatron")
    line = (out / "data_path.txt").read_text().strip()
    assert line == record["data_path"]
    prefixes, weights = get_blend_from_list(line.split())
    store = open_store(str(token_store))
    assert prefixes == [str(out / d) for d in store.domains]
    total = store.manifest["tokens"]
    assert weights == pytest.approx([store.num_tokens(d) / total for d in store.domains], rel=1e-9)
    assert sum(weights) == pytest.approx(1.0)


def test_megatron_gpt_dataset_builds_training_samples_from_the_export(token_store, tmp_path):
    """What `pretrain_gpt.py --data-path $(cat data_path.txt)` does with the export, minus the model."""
    _megatron()
    import torch  # noqa: F401 (megatron-core's datasets hand out torch tensors)
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list
    from megatron.core.tokenizers import MegatronTokenizer

    out = tmp_path / "megatron"
    export_store(str(token_store), str(out), "megatron")
    store = open_store(str(token_store))
    tokenizer = MegatronTokenizer.from_pretrained(tokenizer_path=str(out / "tokenizer.model"),
                                                  metadata_path={"library": "sentencepiece"})
    assert tokenizer.eod == store.eod_id  # Megatron's eod is the model's </s>: the id ending every document
    config = GPTDatasetConfig(random_seed=1, sequence_length=64, split="100,0,0", tokenizer=tokenizer,
                              blend=get_blend_from_list((out / "data_path.txt").read_text().split()),
                              reset_position_ids=True, reset_attention_mask=False, eod_mask_loss=False)
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [200, 0, 0], lambda: True, config).build()
    assert len(train) >= 200
    # samples are drawn from the domains in proportion to their token shares
    drawn = np.bincount(np.asarray(train.dataset_index[:200]), minlength=len(store.domains)) / 200
    shares = [store.num_tokens(d) / store.manifest["tokens"] for d in store.domains]
    assert drawn == pytest.approx(shares, abs=0.02)
    documents = {tuple(store.document_tokens(d, i).tolist()) for d in store.domains
                 for i in range(store.num_documents(d))}
    whole = 0
    for j in range(50):
        sample = train[j]
        tokens = sample["tokens"].tolist() + [int(sample["labels"][-1])]
        ends = [k for k, t in enumerate(tokens) if t == store.eod_id]
        # every document lying wholly inside a sample is a store document, ending with eod
        for a, b in zip(ends, ends[1:]):
            assert tuple(tokens[a + 1:b + 1]) in documents
            whole += 1
        # positions restart after each end-of-document token
        positions = sample["position_ids"].tolist()
        for k in ends:
            if k + 1 < len(positions):
                assert positions[k + 1] == 0
    assert whole > 20


def test_uint32_store_exports_int32_tokens(tmp_path):
    indexed = _megatron()
    tok = tiny_tokenizer()
    tok.dtype = np.dtype(np.uint32)  # as for a vocabulary above 65536
    docs = {"a": [np.array([70000, 5, 6], np.uint32), np.array([1 << 20], np.uint32), np.array([9], np.uint32)]}
    write_token_store(str(tmp_path / "s"), docs, tok)
    export_store(str(tmp_path / "s"), str(tmp_path / "out"), "megatron")
    ds = indexed.IndexedDataset(str(tmp_path / "out" / "a"))
    assert ds.index.dtype == np.int32
    assert [d.tolist() for d in ds[0:3]] == [[70000, 5, 6, tok.eod_id], [1 << 20, tok.eod_id], [9, tok.eod_id]]


def test_index_file_layout_byte_for_byte(tmp_path):
    """The .idx header and arrays exactly as Megatron's _IndexWriter lays them out (no megatron-core needed)."""
    write_token_store(str(tmp_path / "s"), {"d": [np.array([5, 6, 7], np.uint16), np.array([8], np.uint16)]})
    export_store(str(tmp_path / "s"), str(tmp_path / "out"), "megatron")
    eod = open_store(str(tmp_path / "s")).eod_id
    idx = (tmp_path / "out" / "d.idx").read_bytes()
    expected = (b"MMIDIDX\x00\x00" + (1).to_bytes(8, "little") + bytes([8]) + (2).to_bytes(8, "little")
                + (3).to_bytes(8, "little") + np.array([4, 2], "<i4").tobytes() + np.array([0, 8], "<i8").tobytes()
                + np.array([0, 1, 2], "<i8").tobytes())
    assert idx == expected
    assert np.fromfile(tmp_path / "out" / "d.bin", "<u2").tolist() == [5, 6, 7, eod, 8, eod]


def test_data_path_line_keeps_tiny_shares_and_refuses_whitespace():
    line = data_path_line([(10**12, "/x/big"), (1, "/x/tiny")])
    weights = [float(w) for w in line.split()[::2]]
    assert weights[1] > 0 and weights[0] == pytest.approx(1.0)
    with pytest.raises(ExportError, match="whitespace"):
        data_path_line([(1, "/my exports/a")])


def test_a_document_without_the_end_of_document_id_is_refused():
    tokens = np.array([5, 2, 6, 7, 2], np.uint16)
    export_mod._check_documents("d", 0, tokens, np.array([0, 2, 5]), eod=2)
    with pytest.raises(ExportError, match="document 1 does not end with the end-of-document id 2"):
        export_mod._check_documents("d", 0, tokens[:4], np.array([0, 2, 4]), eod=2)
    with pytest.raises(ExportError, match="empty document"):
        export_mod._check_documents("d", 0, tokens, np.array([0, 2, 2, 5]), eod=2)


# ---------------------------------------------------------------- atomicity and the output folder


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_export_leaves_no_file_under_a_final_name(token_store, tmp_path, monkeypatch):
    real = export_mod.write_megatron_domain
    calls = []

    def dies_on_the_second_domain(store, domain, prefix, out_dtype):
        calls.append(domain)
        if len(calls) == 2:
            with open(prefix + ".bin", "wb") as f:
                f.write(b"half a file")
            raise KeyboardInterrupt
        return real(store, domain, prefix, out_dtype)

    monkeypatch.setattr(export_mod, "write_megatron_domain", dies_on_the_second_domain)
    with pytest.raises(KeyboardInterrupt):
        export_store(str(token_store), str(tmp_path / "fresh"), "megatron")
    assert os.listdir(tmp_path) == []  # neither DIR nor a temporary folder

    # a re-export over a complete one: the old export stays whole until the new one replaces it
    monkeypatch.setattr(export_mod, "write_megatron_domain", real)
    export_store(str(token_store), str(tmp_path / "out"), "megatron")
    before = _tree(tmp_path / "out")
    calls.clear()
    monkeypatch.setattr(export_mod, "write_megatron_domain", dies_on_the_second_domain)
    with pytest.raises(KeyboardInterrupt):
        export_store(str(token_store), str(tmp_path / "out"), "megatron")
    assert _tree(tmp_path / "out") == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_leftover_of_a_killed_export_is_removed_and_format_can_change(token_store, tmp_path):
    leftover = tmp_path / f"out{export_mod.TEMP_MARKER}0123abcd"
    leftover.mkdir()
    (leftover / "edu-2.bin").write_bytes(b"killed midway")
    export_store(str(token_store), str(tmp_path / "out"), "megatron")
    assert sorted(os.listdir(tmp_path)) == ["out"]
    export_store(str(token_store), str(tmp_path / "out"), "hf")  # replaces the megatron export entirely
    assert not list((tmp_path / "out").glob("*.bin"))
    assert (tmp_path / "out" / "README.md").exists()


def test_output_folder_rules(token_store, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="holds no Shammie export") as err:
        export_store(str(token_store), str(foreign), "megatron")
    assert isinstance(err.value, ShammieError) and isinstance(err.value, ValueError)
    assert (foreign / "todo.txt").read_text() == "mine"
    with pytest.raises(ExportError, match="local folder"):
        export_store(str(token_store), "s3://bucket/export", "megatron")
    (tmp_path / "empty").mkdir()
    export_store(str(token_store), str(tmp_path / "empty"), "megatron")
    assert (tmp_path / "empty" / "export.json").exists()


def test_export_of_an_older_kept_build(tmp_path):
    _megatron()
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    store = tmp_path / "s"
    write_token_store(str(store), {"a": [np.array([5, 6], np.uint16)]}, build_id="aaaaaaaaaaaa")
    write_token_store(str(store), {"a": [np.array([7, 8, 9], np.uint16)]}, build_id="bbbbbbbbbbbb")
    record = export_store(str(store), str(tmp_path / "old"), "megatron", build_id="aaaaaaaaaaaa")
    assert record["build_id"] == "aaaaaaaaaaaa"
    # (kept in a name: IndexedDataset closes its memory map when collected, under arrays it handed out)
    old = IndexedDataset(str(tmp_path / "old" / "a"))
    assert old[0].tolist()[:2] == [5, 6]


# ---------------------------------------------------------------- hugging face


@pytest.fixture(scope="module")
def site_job(tmp_path_factory):
    """A real store built from a job (site domains have dots in their names) with a stats.json funnel."""
    job = tmp_path_factory.mktemp("job")
    write_job(str(job), [synthetic_documents(300, seed=5)], stage="deduped")
    jobdir.update_stats(str(job), "crawl", {
        "records_read": 2000, "html_responses": 900, "kept": 400, "documents": 400,
        "filter_order": ["url_filter", "extraction_empty", "language", "gopher_repetition", "gopher_quality",
                         "c4_quality", "fineweb_quality"],
        "dropped": {"not_html": 1100, "url_filter": 20, "language": 300, "gopher_quality": 150, "fineweb_quality": 30}})
    jobdir.update_stats(str(job), "dedup", {"documents": 300, "documents_in": 400, "kept": 300, "removed": 100})
    build_store(str(job), group_by="site", train_tokenizer=400, progress=False, tokenizer_sample_bytes=2_000_000,
                shard_tokens=8000)
    return job


def test_hf_export_loads_per_domain_with_datasets_and_rows_match(site_job, tmp_path):
    datasets = pytest.importorskip("datasets")
    store = open_store(str(site_job / "store"))
    out = tmp_path / "hf"
    record = export_store(str(site_job / "store"), str(out), "hf")
    assert any("." in d for d in store.domains) and len(store.domains) > 3
    for domain in store.domains:
        ds = datasets.load_dataset(str(out), name=domain, split="train", cache_dir=str(tmp_path / "cache"))
        assert ds.to_list() == list(store.iter_documents(domain))
        assert sum(ds["n_tokens"]) == store.num_tokens(domain) == record["domains"][domain]["tokens"]
    everything = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert everything.num_rows == store.manifest["documents"]
    assert set(everything.column_names) >= {"id", "text", "url", "language", "edu_score", "n_tokens"}


def test_hf_dataset_card_front_matter_domains_and_funnel(site_job, tmp_path):
    store = open_store(str(site_job / "store"))
    out = tmp_path / "hf"
    export_store(str(site_job / "store"), str(out), "hf")
    card = (out / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    configs = {c["config_name"]: c for c in yaml.safe_load(front)["configs"]}
    assert set(configs) == set(store.domains) | {"all"}
    assert configs["all"]["default"] is True
    for domain in store.domains:
        assert configs[domain]["data_files"] == [{"split": "train", "path": f"data/{domain}/*.parquet"}]
        assert f"| {domain} | {store.num_documents(domain):,} | {store.num_tokens(domain):,} |" in body
    # the funnel from the job's stats.json: 900 pages, -20 URL, -300 language, -150 Gopher, -30 FineWeb
    for row in ("| WARC records read | 2,000 |", "| HTML pages | 900 |", "| after URL filter | 880 |",
                "| after language | 580 |", "| after Gopher quality | 430 |", "| after FineWeb quality | 400 |",
                "| kept by the crawl | 400 |", "| after dedup | 300 |", "| in the store | 300 |"):
        assert row in body, row


def test_hf_card_without_a_job_says_why_there_is_no_funnel(token_store, tmp_path):
    export_store(str(token_store), str(tmp_path / "hf"), "hf")
    assert "Not available: the store's manifest names no job." in (tmp_path / "hf" / "README.md").read_text()


def test_all_config_name_avoids_a_domain_called_all(tmp_path):
    write_token_store(str(tmp_path / "s"), {"all": [np.array([5], np.uint16)], "b": [np.array([6], np.uint16)]})
    record = export_store(str(tmp_path / "s"), str(tmp_path / "hf"), "hf")
    assert record["all_config"] == "all-domains"


# ---------------------------------------------------------------- command line


def test_cli_exports_and_prints_the_data_path(token_store, tmp_path, capsys):
    from shammie.jobs.cli import main

    assert main(["export", str(token_store), "--format", "megatron", "--output", str(tmp_path / "m")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "m" / "data_path.txt").read_text().strip() in printed.splitlines()
    assert "export: " in printed  # which domain is being written
    assert main(["export", str(token_store), "--format", "hf", "--output", str(tmp_path / "h"), "--no-progress"]) == 0
    assert (tmp_path / "h" / "README.md").exists()
    printed = capsys.readouterr().out
    assert "export: " not in printed and printed.startswith("exported ")  # the closing summary only


def test_cli_mistakes_end_with_one_line_and_exit_2(tmp_path, capsys):
    from shammie.jobs.cli import main

    assert main(["export", str(tmp_path / "nostore"), "--format", "hf", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nostore" in err and "does not exist" in err
    (tmp_path / "notastore").mkdir()
    assert main(["export", str(tmp_path / "notastore"), "--format", "hf", "--output", str(tmp_path / "o")]) == 2
    assert "not a shard store" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["export", str(tmp_path), "--format", "jsonl", "--output", str(tmp_path / "o")])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_export_of_a_store_on_s3(tmp_path, s3_bucket, monkeypatch):
    """Shards are fetched into the store cache, verified, and exported like local ones."""
    monkeypatch.setenv("SHAMMIE_CACHE_DIR", str(tmp_path / "cache"))
    docs = {"a": _random_documents(4, 30), "b": _random_documents(5, 20)}
    url = f"s3://{s3_bucket}/stores/s"
    write_token_store(url, docs, shard_tokens=500)
    store = open_store(url)
    export_store(url, str(tmp_path / "m"), "megatron")
    export_store(url, str(tmp_path / "h"), "hf")
    for domain, documents in docs.items():
        stream = np.fromfile(tmp_path / "m" / f"{domain}.bin", "<u2").tolist()
        assert stream == [t for d in documents for t in d.tolist() + [store.eod_id]]
        ids = [r["id"] for f in sorted((tmp_path / "h" / "data" / domain).glob("*.parquet"))
               for r in pq.read_table(f, columns=["id"]).to_pylist()]
        assert ids == [f"{domain}-{i}" for i in range(len(documents))]


def test_export_is_a_step_of_a_job_config_with_its_stats(site_job, tmp_path, capsys):
    """`export:` in a job YAML runs after the shard step on the stage runner: its record in stats.json,
    nothing of the runner's inside the export folder, and a re-run finds it complete."""
    import json
    import shutil

    from shammie.jobs.cli import main

    job = tmp_path / "job"
    shutil.copytree(site_job, job)
    config = tmp_path / "job.yaml"
    config.write_text(f"output: {job}\ncrawl: {{enabled: false}}\ndedup: {{enabled: false}}\n"
                      f"shard: {{enabled: false}}\nexport: {{enabled: true, format: megatron, output: {tmp_path / 'mg'}}}\n")
    assert main(["run", str(config), "--no-progress"]) == 0
    stats = json.loads((job / "stats.json").read_text())["export"]
    assert stats["format"] == "megatron" and stats["tokens"] > 0 and stats["settings"]["format"] == "megatron"
    # the section's seconds are the whole run, its one phase within them (main had the writing alone there)
    assert stats["seconds"] >= stats["phases"]["export"]["seconds"] and stats["write_seconds"] <= stats["seconds"]
    assert (tmp_path / "mg" / "data_path.txt").exists()
    assert not [p.name for p in (tmp_path / "mg").iterdir() if p.name.startswith("_")]
    assert len(list((job / "_export").glob("mg-*/_SUCCESS"))) == 1
    from shammie.jobs.report import write_report

    _, plots = write_report(str(job))  # the export step is in the report's per-stage throughput
    assert "export" in [row[0] for row in next(p for p in plots if p.key == "throughput").table]
    capsys.readouterr()
    assert main(["run", str(config), "--no-progress"]) == 0
    assert "export: complete, skipped" in capsys.readouterr().out
    # another format is a changed setting: refused without --overwrite
    config.write_text(config.read_text().replace("format: megatron", "format: hf"))
    assert main(["run", str(config), "--no-progress"]) == 2
    assert main(["run", str(config), "--no-progress", "--overwrite"]) == 0
    assert json.loads((job / "stats.json").read_text())["export"]["format"] == "hf"


def test_cli_export_runs_through_the_stage_runner_recorded_in_the_stores_job(site_job, tmp_path, capsys):
    """`shammie export JOB/store` records the export in JOB (stats.json, JOB/_export/), finds the same export
    complete on a re-run, exports the same store to a second folder, and refuses a rebuilt store for an
    existing export unless --overwrite."""
    import json
    import shutil

    from shammie.jobs.cli import main

    job = tmp_path / "job"
    shutil.copytree(site_job, job)
    store = str(job / "store")
    megatron = ["export", store, "--format", "megatron", "--output", str(tmp_path / "mg"), "--no-progress"]
    assert main(megatron) == 0
    section = json.loads((job / "stats.json").read_text())["export"]
    assert section["format"] == "megatron" and section["tokens"] > 0 and "cpu_seconds" in section
    assert section["settings"]["output"] == str(tmp_path / "mg")
    assert not [p.name for p in (tmp_path / "mg").iterdir() if p.name.startswith(("_", "."))]
    assert len(list((job / "_export").glob("mg-*/_SUCCESS"))) == 1
    before = (tmp_path / "mg").stat().st_ino  # an export is a new folder renamed into place
    capsys.readouterr()
    assert main(megatron) == 0  # the same export again: complete, not redone
    assert (tmp_path / "mg").stat().st_ino == before
    # and it says so: the summary is the one recorded, not a second export
    assert capsys.readouterr().out.startswith("already complete (built 20")
    # another folder is another export of the same store, not a changed setting
    assert main(["export", store, "--format", "hf", "--output", str(tmp_path / "hf"), "--no-progress"]) == 0
    assert json.loads((job / "stats.json").read_text())["export"]["format"] == "hf"
    # the store rebuilt: the export made from the old one is refused, then replaced with --overwrite
    manifest = job / "store" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"seq_len"', '"seq_len" ', 1))
    capsys.readouterr()
    assert main(megatron) == 2
    err = capsys.readouterr().err
    assert "changed" in err and "--overwrite" in err
    assert main(megatron + ["--overwrite"]) == 0
    assert (tmp_path / "mg").stat().st_ino != before


def test_cli_export_of_a_store_outside_a_job_keeps_its_record_beside_the_output(token_store, tmp_path):
    from shammie.jobs.cli import main

    out = tmp_path / "out" / "mg"
    assert main(["export", str(token_store), "--format", "megatron", "--output", str(out), "--no-progress"]) == 0
    books = tmp_path / "out" / ".mg.shammie"
    assert (books / "stats.json").exists() and list((books / "_export").glob("mg-*/_SUCCESS"))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("_", "."))) == []
    assert not (token_store.parent / "stats.json").exists()


def test_an_export_of_a_jobs_store_records_no_local_absolute_path(site_job, tmp_path):
    """export.json sits beside the dataset card and travels with it: the store is named relative to its job."""
    out = tmp_path / "hf-shared"
    record = export_store(str(site_job / "store"), str(out), "hf")
    assert record["store"] == "store"
    for name in ("export.json", "README.md"):
        assert str(site_job) not in (out / name).read_text(), name
