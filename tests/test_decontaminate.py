"""Benchmark decontamination: planted benchmark passages are removed, near-misses are kept."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shammie.filters.decontaminate import NgramIndex, build_index
from shammie.jobs.cli import main
from shammie.jobs.config import load_config
from shammie.pipeline import documents, jobdir
from test_stage_runner import ids_of, one_line_error, seed_documents, words


def disguised(text: str) -> str:
    """The same words as `text` with other case, punctuation and spacing, as a web page might quote them."""
    out = []
    for i, word in enumerate(text.split()):
        out.append(word.upper() if i % 3 == 0 else word.capitalize() if i % 3 == 1 else word + ",")
    return "  “" + "   ".join(out) + "?!”  "


def embedded(seed: int, passage: str) -> str:
    return f"{words(seed, 60)} {passage} {words(seed + 1, 60)}"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# Benchmark items (random words, letters only: the normalisation maps digits to 0).
ITEM_JSONL = words(100, 20)        # planted in a1, disguised
ITEM_EXACT_13 = words(101, 13)     # planted in b1 exactly: 13 words is one 13-gram
ITEM_NEAR = words(102, 13)         # only its first 12 words appear (a2)
ITEM_ORDER = words(103, 20)        # appears with its words reversed (a3)
ITEM_PHRASE = words(104, 30)       # 10 of its words appear (b2)
ITEM_PARQUET = words(105, 25)      # planted in b3 and in a4
ITEM_TXT = words(106, 16)          # planted in b4
ITEM_ONE_CHANGED = words(107, 25)  # appears with every 12th word replaced (b5)


def one_changed(text: str) -> str:
    ws = text.split()
    return " ".join("zzzq" if i % 12 == 6 else w for i, w in enumerate(ws))


@pytest.fixture
def contaminated_job(tmp_path):
    job = tmp_path / "job"
    seed_documents(job, {
        "a.parquet": [("a1", embedded(1, disguised(ITEM_JSONL)), "S1"),
                      ("a2", embedded(3, " ".join(ITEM_NEAR.split()[:12])), "S1"),
                      ("a3", embedded(5, " ".join(reversed(ITEM_ORDER.split()))), "S1"),
                      ("a4", embedded(7, ITEM_PARQUET.upper()), "S1"),
                      ("a5", words(9), "S1")],
        "b.parquet": [("b1", embedded(11, ITEM_EXACT_13), "S1"),
                      ("b2", embedded(13, " ".join(ITEM_PHRASE.split()[5:15])), "S1"),
                      ("b3", embedded(15, ITEM_PARQUET), "S1"),
                      ("b4", embedded(17, disguised(ITEM_TXT)), "S1"),
                      ("b5", embedded(19, one_changed(ITEM_ONE_CHANGED)), "S1")],
    })
    bench = tmp_path / "bench"
    bench.mkdir()
    write_jsonl(bench / "qa.jsonl", [{"question": ITEM_JSONL, "answer": "x"}, {"question": ITEM_EXACT_13},
                                     {"question": ITEM_NEAR}, {"question": "What is two plus two?"},
                                     {"question": ITEM_ORDER}, {"question": None}])
    pq.write_table(pa.table({"question": [ITEM_PHRASE, ITEM_PARQUET, ITEM_ONE_CHANGED]}), bench / "set.parquet")
    (bench / "lines.txt").write_text(f"{ITEM_TXT}\n\n{words(108, 30)}\n")
    return job, bench


def test_planted_passages_are_removed_and_near_misses_kept(contaminated_job, ray_session, capsys):
    job, bench = contaminated_job
    assert main(["decontaminate", str(job), "--against", str(bench / "qa.jsonl"), str(bench / "set.parquet"),
                 "--against", str(bench / "lines.txt"), "--text-column", "question", "--no-progress"]) == 0
    # removed: the disguised 20-word item, the exact 13-word item, the Parquet item (twice), the .txt item;
    # kept: 12 of 13 words, the words reversed, a shared 10-word phrase, one word in 12 changed
    assert ids_of(job / "decontaminated") == ["a2", "a3", "a5", "b2", "b5"]
    out = capsys.readouterr().out
    assert "10 documents in, 5 removed, 5 kept" in out
    stats = json.loads((job / "stats.json").read_text())["decontaminate"]
    assert (stats["documents_in"], stats["removed"], stats["kept"], stats["ngram"]) == (10, 5, 5, 13)
    per_file = {k.rsplit("/", 1)[-1]: v for k, v in stats["benchmarks"].items()}
    # qa.jsonl: 6 rows; "What is two plus two?" and the null have fewer than 13 words
    assert per_file["qa.jsonl"] == {"documents_removed": 2, "items_matched": 2, "items": 6, "items_too_short": 2,
                                    "ngrams": (20 - 12) + 1 + 1 + (20 - 12)}
    assert per_file["set.parquet"] == {"documents_removed": 2, "items_matched": 1, "items": 3, "items_too_short": 0,
                                       "ngrams": (30 - 12) + (25 - 12) + (25 - 12)}
    assert per_file["lines.txt"] == {"documents_removed": 1, "items_matched": 1, "items": 2, "items_too_short": 0,
                                     "ngrams": (16 - 12) + (30 - 12)}
    assert stats["input_stage"] == "documents"
    removed = documents.read_table(str(job / "_meta" / "decontaminated" / "removed" / "removed.parquet")).to_pylist()
    matched = {r["id"]: [(m["benchmark"].rsplit("/", 1)[-1], m["item"]) for m in r["matches"]] for r in removed}
    assert matched == {"a1": [("qa.jsonl", 0)], "b1": [("qa.jsonl", 1)], "a4": [("set.parquet", 1)],
                       "b3": [("set.parquet", 1)], "b4": [("lines.txt", 0)]}
    # the work files (the n-gram index) are gone; downstream stages read decontaminated/
    assert not (job / "_meta" / "decontaminated" / "_work").exists()
    assert jobdir.resolve_input_stage(str(job), before=jobdir.SCORED) == jobdir.DECONTAMINATED
    # the report's funnel and throughput show the step (a crawl section as a crawl would leave it)
    from shammie.jobs.report import build_plots

    jobdir.update_stats(str(job), "crawl", {"records_read": 10, "kept": 10, "documents": 10, "seconds": 1.0})
    plots = {p.key: p for p in build_plots(str(job))[0]}
    assert plots["funnel"].png is not None and ("after decontamination", 5) in plots["funnel"].table
    assert ("decontaminated against set.parquet", "2 documents removed, 1 of 3 items matched") in plots["funnel"].table
    assert [row for row in plots["throughput"].table if row[0] == "decontaminate"]


def test_rerun_is_complete_a_changed_benchmark_file_is_refused_and_overwrite_recomputes(contaminated_job,
                                                                                          ray_session, capsys):
    job, bench = contaminated_job
    command = ["decontaminate", str(job), "--against", str(bench / "lines.txt"), "--no-progress"]
    assert main(command) == 0
    assert ids_of(job / "decontaminated") == [i for i in ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "b5"]]
    capsys.readouterr()
    assert main(command[:-1]) == 0
    assert "already complete" in capsys.readouterr().out
    # a benchmark file changes: the output no longer says what it was made from
    (bench / "lines.txt").write_text(f"{ITEM_TXT}\n{ITEM_EXACT_13}\n")
    assert main(command) == 2
    err = one_line_error(capsys)
    assert "settings changed" in err and f"against_file:{bench / 'lines.txt'}" in err and "--overwrite" in err
    assert ids_of(job / "decontaminated") == ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "b3", "b5"]
    # another n-gram size is a setting too
    assert main(command + ["--ngram", "8"]) == 2
    assert "ngram: 13 -> 8" in one_line_error(capsys)
    assert main(command + ["--overwrite"]) == 0
    assert ids_of(job / "decontaminated") == ["a1", "a2", "a3", "a4", "a5", "b2", "b3", "b5"]
    stats = json.loads((job / "stats.json").read_text())["decontaminate"]
    assert stats["benchmarks"][str(bench / "lines.txt")]["items_matched"] == 2


def test_user_mistakes_are_one_line_exit_2_before_any_work(contaminated_job, ray_session, capsys):
    job, bench = contaminated_job
    assert main(["decontaminate", str(job), "--against", str(bench / "missing.jsonl"), "--no-progress"]) == 2
    assert "missing.jsonl" in one_line_error(capsys)
    # the default text column is "text"; these files name it "question"
    assert main(["decontaminate", str(job), "--against", str(bench / "qa.jsonl"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert "qa.jsonl:1: no 'text' key" in err and "--text-column" in err
    assert main(["decontaminate", str(job), "--against", str(bench / "set.parquet"), "--no-progress"]) == 2
    assert "has no column 'text' (columns: question)" in one_line_error(capsys)
    (bench / "damaged.parquet").write_bytes(b"PAR1 not really")
    assert main(["decontaminate", str(job), "--against", str(bench / "damaged.parquet"), "--no-progress"]) == 2
    assert "damaged.parquet cannot be read as a benchmark file" in one_line_error(capsys)
    write_jsonl(bench / "late.jsonl", [{"text": ITEM_TXT}] * 3 + [["not", "an", "object"]])
    assert main(["decontaminate", str(job), "--against", str(bench / "late.jsonl"), "--no-progress"]) == 2
    assert "late.jsonl:4: no 'text' key (has: list)" in one_line_error(capsys)
    (bench / "items.csv").write_text("a,b\n")
    assert main(["decontaminate", str(job), "--against", str(bench / "items.csv"), "--no-progress"]) == 2
    assert "expected .txt, .jsonl" in one_line_error(capsys)
    (bench / "short.txt").write_text("What is two plus two?\n")
    assert main(["decontaminate", str(job), "--against", str(bench / "short.txt"), "--no-progress"]) == 2
    assert "no item of 13 words or more" in one_line_error(capsys)
    # refused before the runner recorded anything: fixing the file is enough, no --overwrite needed
    assert not (job / "decontaminated").exists()
    (bench / "short.txt").write_text(f"What is two plus two?\n{ITEM_TXT}\n")
    assert main(["decontaminate", str(job), "--against", str(bench / "short.txt"), "--no-progress"]) == 0
    assert "b4" not in ids_of(job / "decontaminated")


def test_an_ngram_shared_by_items_of_two_files_counts_for_both(tmp_path):
    shared = words(200, 13)
    (tmp_path / "one.txt").write_text(f"{words(201, 5)} {shared}\n")
    (tmp_path / "two.txt").write_text(f"{words(202, 20)}\n{shared} {words(203, 4)}\n")
    files = [str(tmp_path / "one.txt"), str(tmp_path / "two.txt")]
    hashes, owners, starts, stats = build_index(files, "text", 13)
    assert np.all(np.diff(hashes.astype(np.float64)) >= 0)  # sorted, as searchsorted needs
    index = NgramIndex(hashes, owners, starts, 13)
    items = index.matched_items(f"intro words here. {shared.title()}. the end")
    assert items.tolist() == [0, 2]
    assert index.file_of(items).tolist() == [0, 1]
    assert index.matched_items(words(204, 200)).size == 0
    assert index.matched_items("").size == 0
    assert stats[files[1]] == {"items": 2, "items_too_short": 0, "ngrams": 8 + 5}


def test_a_job_config_runs_the_step_on_an_existing_job(contaminated_job, ray_session):
    job, bench = contaminated_job
    config = job.parent / "decontaminate-only.yaml"
    config.write_text(textwrap.dedent(f"""
        output: {job}
        crawl: {{enabled: false}}
        dedup: {{enabled: false}}
        shard: {{enabled: false}}
        decontaminate: {{enabled: true, against: ["{bench / 'lines.txt'}"]}}
    """))
    assert main(["run", str(config), "--no-progress"]) == 0
    assert "b4" not in ids_of(job / "decontaminated") and len(ids_of(job / "decontaminated")) == 9
    stats = json.loads((job / "stats.json").read_text())
    assert stats["decontaminate"]["removed"] == 1 and stats["run"]["steps"]["decontaminate"]["documents"] == 9


def test_job_config_section_is_off_by_default_and_chains_between_dedup_and_scoring(tmp_path, capsys):
    warc = tmp_path / "warc"
    warc.mkdir()
    (warc / "a.warc.gz").write_bytes(b"")
    (tmp_path / "mmlu.jsonl").write_text(json.dumps({"text": words(1, 20)}) + "\n")
    config = tmp_path / "job.yaml"
    config.write_text(textwrap.dedent("""
        input: [warc]
        output: out/job
        shard: {group_by: site}
    """))
    assert not load_config(str(config)).enabled("decontaminate")
    config.write_text(config.read_text() + "decontaminate: {enabled: true, against: [mmlu.jsonl], ngram: 8}\n")
    loaded = load_config(str(config))
    assert loaded.stage("decontaminate")["against"] == [str(tmp_path / "mmlu.jsonl")]
    assert main(["run", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    job = tmp_path / "out" / "job"
    assert f"2. dedup       documents -> {job / 'deduped'}" in out
    assert f"3. decontaminate deduped -> {job / 'decontaminated'}" in out
    assert f"4. shard       decontaminated -> {job / 'store'}" in out
    config.write_text(config.read_text().replace("mmlu.jsonl", "gone.jsonl"))
    assert main(["run", str(config), "--dry-run"]) == 2
    assert "decontaminate.against[0]: 'gone.jsonl' does not exist" in capsys.readouterr().err


def test_job_and_gzipped_benchmark_file_on_s3(tmp_path, ray_session, s3_server, s3_bucket, capsys):
    import gzip

    import boto3

    from shammie.pipeline import storage

    local = tmp_path / "job"
    seed_documents(local, {"a.parquet": [("a1", embedded(1, disguised(ITEM_TXT)), "S1"), ("a2", words(9), "S1")]})
    s3 = boto3.client("s3", endpoint_url=s3_server)
    for path in local.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=s3_bucket, Key=f"job/{path.relative_to(local).as_posix()}", Body=path.read_bytes())
    s3.put_object(Bucket=s3_bucket, Key="bench/items.jsonl.gz",
                  Body=gzip.compress((json.dumps({"text": ITEM_TXT}) + "\n").encode()))
    job, items = f"s3://{s3_bucket}/job", f"s3://{s3_bucket}/bench/items.jsonl.gz"
    assert main(["decontaminate", job, "--against", items, "--no-progress"]) == 0
    kept = documents.read_table(storage.join(job, "decontaminated", "a.parquet"))["id"].to_pylist()
    assert kept == ["a2"]
    stats = storage.read_json(storage.join(job, "stats.json"))["decontaminate"]
    assert stats["benchmarks"][items]["items_matched"] == 1 and "etag" in stats["settings"][f"against_file:{items}"]
    # the object changes (a new ETag): refused like a changed local file
    s3.put_object(Bucket=s3_bucket, Key="bench/items.jsonl.gz",
                  Body=gzip.compress((json.dumps({"text": ITEM_EXACT_13}) + "\n").encode()))
    capsys.readouterr()
    assert main(["decontaminate", job, "--against", items, "--no-progress"]) == 2
    assert f"against_file:{items}" in one_line_error(capsys)


def test_globs_expand_in_order_given_without_repeats(tmp_path):
    from shammie.filters.decontaminate import benchmark_files
    from shammie.pipeline.errors import InputError

    for name in ("b.txt", "a.txt", "c.jsonl"):
        (tmp_path / name).write_text("x\n")
    files = benchmark_files((str(tmp_path / "c.jsonl"), str(tmp_path / "*.txt"), str(tmp_path / "a.txt")))
    assert files == [str(tmp_path / n) for n in ("c.jsonl", "a.txt", "b.txt")]
    (tmp_path / "notes.md").write_text("x\n")
    with pytest.raises(InputError, match="notes.md: not a benchmark file"):
        benchmark_files((str(tmp_path / "*"),))
    with pytest.raises(InputError, match="matches no file"):
        benchmark_files((str(tmp_path / "*.parquet"),))
    with pytest.raises(InputError, match="not a benchmark file"):
        benchmark_files(("cc:CC-MAIN-2024-22",))
