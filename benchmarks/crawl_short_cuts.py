"""The crawl's short cuts (filters/short_pages.py) against the full path, file by file, in-process.

    .venv/bin/python benchmarks/crawl_short_cuts.py FILE_OR_FOLDER... [--extractor trafilatura|resiliparse]
        [--languages en] [--json OUT]

For each WARC file, the crawl task runs twice in one process, as a worker runs it (the stage
set up once: models loaded, every step warmed): with the short cuts, and with them switched
off (the full path: every page extracted and filtered). It reports
  * whether the kept documents are the same, id for id and text for text;
  * that every page a short cut dropped (`short_page`, `short_text`) was dropped by the full
    path too, and under which filter;
(CPU per step is not compared here: the second pass over a file meets word caches the first one
filled. benchmarks/crawl_profile.py in separate processes, alternating, measures that.)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
from collections import Counter

import pyarrow.parquet as pq

from shammie.filters.crawl import CrawlOptions, CrawlStage
from shammie.filters.short_pages import SHORT_PAGE, SHORT_TEXT, PageCheck, ShortCuts


def warc_files(inputs: list[str]) -> list[str]:
    out = []
    for x in inputs:
        if os.path.isdir(x):
            out += sorted(p for p in glob.glob(os.path.join(x, "**", "*"), recursive=True)
                          if p.endswith((".warc.gz", ".warc", ".arc.gz")))
        else:
            out.append(x)
    return out


def run_file(stage: CrawlStage, path: str, work: str, tag: str) -> dict:
    name = f"{tag}-{os.path.basename(path)}"
    out = os.path.join(work, tag)
    os.makedirs(out, exist_ok=True)
    funnel = stage.run_task({"url": os.path.abspath(path), "name": name}, out)
    kept = {r["id"]: r["text"] for r in pq.read_table(os.path.join(out, f"{name}.parquet"),
                                                      columns=["id", "text"]).to_pylist()}
    removed = {r["id"]: r["reason"] for r in pq.read_table(os.path.join(stage.job, "removed", f"{name}.parquet"),
                                                           columns=["id", "reason"]).to_pylist()}
    return {"funnel": funnel, "kept": kept, "removed": removed}


def compare(cut: dict, full: dict) -> dict:
    dropped_by_cut = {i: r for i, r in cut["removed"].items() if r in (SHORT_PAGE, SHORT_TEXT)}
    kept_by_full = [i for i in dropped_by_cut if i in full["kept"]]
    full_reasons = Counter(f"{r} -> {full['removed'].get(i, 'error or not a page')}" for i, r in dropped_by_cut.items())
    return {"same_kept_ids": sorted(cut["kept"]) == sorted(full["kept"]),
            "same_kept_texts": cut["kept"] == full["kept"],
            "kept": len(cut["kept"]), "short_cut_drops": len(dropped_by_cut),
            "short_cut_drops_kept_by_full_path": kept_by_full,
            "full_path_reasons_of_short_cut_drops": dict(sorted(full_reasons.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--extractor", default="trafilatura", choices=["trafilatura", "resiliparse"])
    ap.add_argument("--languages", nargs="+", default=["en"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    files = warc_files(args.inputs)
    work = tempfile.mkdtemp(prefix="shammie-short-cuts-")
    stage = CrawlStage(work, CrawlOptions(inputs=tuple(files), output=work, extractor=args.extractor,
                                          languages=tuple(args.languages), keep_removed=True))
    stage.setup()
    with_cuts = (stage.short_cuts, stage.page_check)
    off = ShortCuts({})
    without = (off, PageCheck(off, args.extractor))
    report = {"extractor": args.extractor, "languages": args.languages, "files": {}}
    ok = True
    totals: Counter = Counter()
    for path in files:
        results = {}
        for tag in ("cuts", "full"):
            stage.short_cuts, stage.page_check = with_cuts if tag == "cuts" else without
            results[tag] = run_file(stage, path, work, tag)
        c = compare(results["cuts"], results["full"])
        c["pages"] = results["cuts"]["funnel"]["html_responses"]
        c["dropped"] = {t: results[t]["funnel"]["dropped"] for t in results}
        ok &= c["same_kept_texts"] and not c["short_cut_drops_kept_by_full_path"]
        totals.update({"pages": c["pages"], "kept": c["kept"], "short_cut_drops": c["short_cut_drops"]})
        totals.update(c["full_path_reasons_of_short_cut_drops"])
        report["files"][path] = c
        print(json.dumps({"file": os.path.basename(path), **{k: v for k, v in c.items() if k != "dropped"}}),
              flush=True)
    report["totals"], report["all_agree"] = dict(totals), ok
    print(json.dumps({"totals": dict(totals), "all_agree": ok}, indent=1))
    if args.json:
        json.dump(report, open(args.json, "w"), indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
