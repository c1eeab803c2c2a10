"""Exact dedup and decontamination on real documents written by outsiders (../shared/data/labels)."""

from __future__ import annotations

import json

import pytest

from shammie.jobs.cli import main
from test_stage_runner import ids_of, seed_documents


def real_documents(shared) -> list[str]:
    texts = [json.loads(line)["text"] for line in (shared / "labels" / "dclm-human-quality-agreement.jsonl").open()]
    seen, unique = set(), []
    for t in texts:  # the set itself has no exact repeats we rely on: keep each text once
        key = " ".join(t.lower().split())
        if key not in seen and len(t.split()) >= 50:
            seen.add(key)
            unique.append(t)
    return unique


@pytest.mark.shared_data
def test_exact_copies_of_real_pages_are_found_and_minhash_keeps_the_same_set(shared_data, tmp_path, ray_session):
    texts = real_documents(shared_data)[:120]
    originals = [(f"o{i:03d}", t, "CC-MAIN-2024-10") for i, t in enumerate(texts)]
    # a re-crawl of every fifth page: other case, other spacing, trailing punctuation (same normalised text)
    copies = [(f"c{i:03d}", "  " + t.upper().replace(" ", "   ") + " !", "CC-MAIN-2024-10")
              for i, t in enumerate(texts) if i % 5 == 0]
    results = {}
    for exact in (True, False):
        job = tmp_path / f"job-{exact}"
        seed_documents(job, {"a.parquet": originals[:60], "b.parquet": originals[60:] + copies})
        assert main(["dedup", str(job), "--no-progress"] + ([] if exact else ["--no-exact"])) == 0
        results[exact] = (ids_of(job / "deduped"), json.loads((job / "stats.json").read_text())["dedup"])
    (kept, stats), (kept_minhash, _) = results[True], results[False]
    assert not any(i.startswith("c") for i in kept)
    assert stats["exact_removed"] == len(copies)
    assert kept == kept_minhash  # the exact pass changes the cost, not the result


@pytest.mark.shared_data
def test_real_benchmark_passages_are_removed_from_real_pages(shared_data, tmp_path, ray_session):
    import pyarrow.parquet as pq

    docs = real_documents(shared_data)[:80]
    legal = pq.read_table(shared_data / "labels" / "fineweb-llm-scored-legal-1.parquet")["text"].to_pylist()
    # benchmark items: 30-word passages cut from real legal pages ...
    items = [" ".join(t.split()[40:70]) for t in legal[:20] if len(t.split()) > 80]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"text": item}) + "\n" for item in items))
    # ... quoted inside real web pages (contaminated), and pages quoting only 10 words of one (kept)
    rows = [(f"d{i:03d}", t, "S") for i, t in enumerate(docs)]
    rows += [(f"q{i:02d}", docs[i] + "\n\nAs the court wrote: " + items[i] + "", "S") for i in range(5)]
    rows += [(f"n{i:02d}", docs[i + 10] + " " + " ".join(items[i].split()[:10]), "S") for i in range(5)]
    job = tmp_path / "job"
    seed_documents(job, {"a.parquet": rows})
    assert main(["decontaminate", str(job), "--against", str(bench), "--no-progress"]) == 0
    kept = ids_of(job / "decontaminated")
    assert not [i for i in kept if i.startswith("q")]
    assert len([i for i in kept if i.startswith("n")]) == 5
    legal_in_docs = [d for d in docs if any(item in d for item in items)]
    assert len(kept) == len(rows) - 5 - len(legal_in_docs)
