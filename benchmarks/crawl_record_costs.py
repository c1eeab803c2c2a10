"""Per-record costs outside extraction and the filters: reading, URL filter, writing; Shammie beside datatrove.

    .venv/bin/python benchmarks/crawl_record_costs.py WARC [--rounds 3] [--peer-venv benchmarks/_work/datatrove-venv]

Each side runs in its own process and venv (datatrove as installed, benchmarks/peer_datatrove_env.sh),
alternating, and reports CPU microseconds per record (process time) of:
  * read: WARC parsing, HTML selection (WARC-Identified-Payload-Type, else libmagic), decoding, and
    the document object the next step gets. datatrove: `WarcReader.read_file` (its documents);
    Shammie: `pipeline.warc.iter_outcomes` and the `Document` the crawl task makes of each page;
  * url_filter: the filter's verdict per page, after its block lists are loaded;
  * write: every page written as a kept document would be (its HTML as the text). datatrove: its
    `JsonlWriter` (gzip JSON lines); Shammie: the task's columns and `pipeline.documents.write_table`.
Run it on the short-page corpus (../shared/tools/make_short_pages.py): there these costs are most
of a page's cost. `--side shammie|datatrove` runs one side in this process (what the driver calls).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PEER_VENV = os.path.join(HERE, "_work", "datatrove-venv")


def _timed(fn):
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def side_datatrove(warc: str) -> dict:
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from tldextract import TLDExtract

    folder, name = os.path.split(os.path.abspath(warc))
    reader = WarcReader(folder)
    read_s, docs = _timed(lambda: list(reader.read_file(name)))
    url_filter = URLFilter()
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())
    url_filter.filter(Document(text="", id="warm", metadata={"url": "https://example.org/"}))  # loads the lists
    url_s, _ = _timed(lambda: [url_filter.filter(d) for d in docs])
    out = tempfile.mkdtemp(prefix="dt-write-")

    def write():
        with JsonlWriter(out, output_filename="${rank}.jsonl.gz") as w:
            for d in docs:
                w.write(d, rank=0)

    write_s, _ = _timed(write)
    return {"records": len(docs), "read": read_s, "url_filter": url_s, "write": write_s}


def side_shammie(warc: str) -> dict:
    import pyarrow as pa
    from datatrove.data import Document

    from shammie.filters.url_blocklist import make_url_filter
    from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table
    from shammie.pipeline.warc import iter_outcomes

    def read():
        docs = []
        for outcome in iter_outcomes(os.path.abspath(warc)):
            page = outcome.page
            if page is not None:
                docs.append((page, Document(text=page.content, id=page.id,
                                            metadata={"url": page.url, "date": page.date})))
        return docs

    read_s, docs = _timed(read)
    url_filter = make_url_filter()
    url_filter.download_data()
    url_filter.filter(Document(text="", id="warm", metadata={"url": "https://example.org/"}))
    url_s, _ = _timed(lambda: [url_filter.filter(d) for _, d in docs])
    out = tempfile.mkdtemp(prefix="sh-write-")
    write_table(pa.Table.from_pydict({"id": ["w"], "text": ["w"]}), os.path.join(out, "warm.parquet"))

    def write():
        cols = {f.name: [] for f in DOCUMENT_SCHEMA}
        for page, doc in docs:  # the appends the crawl task makes per kept page
            cols["id"].append(page.id)
            cols["text"].append(doc.text)
            cols["url"].append(page.url)
            cols["date"].append(page.date)
            cols["language"].append("en")
            cols["language_score"].append(0.9)
            cols["warc_file"].append(warc)
            cols["warc_offset"].append(page.offset)
        cols["dump"] = ["unknown"] * len(docs)
        write_table(pa.Table.from_pydict(cols, schema=DOCUMENT_SCHEMA), os.path.join(out, "out.parquet"))

    write_s, _ = _timed(write)
    return {"records": len(docs), "read": read_s, "url_filter": url_s, "write": write_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("warc")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer-venv", default=DEFAULT_PEER_VENV)
    ap.add_argument("--side", choices=["shammie", "datatrove"], help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.side:
        result = (side_shammie if args.side == "shammie" else side_datatrove)(args.warc)
        print("RESULT " + json.dumps(result))
        return
    pythons = {"shammie": sys.executable, "datatrove": os.path.join(args.peer_venv, "bin", "python")}
    runs: dict[str, list[dict]] = {"shammie": [], "datatrove": []}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for side in (["shammie", "datatrove"] if r % 2 == 0 else ["datatrove", "shammie"]):
            out = subprocess.run([pythons[side], __file__, args.warc, "--side", side], capture_output=True, text=True,
                                 check=True).stdout
            res = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
            runs[side].append(res)
            print(json.dumps({"round": r, "side": side, **res}), flush=True)
    table = {}
    for side, results in runs.items():
        n = results[0]["records"]
        table[side] = {step: round(statistics.median(x[step] for x in results) / n * 1e6, 1)
                       for step in ("read", "url_filter", "write")}
        table[side]["records"] = n
    print(f"\nCPU microseconds per record, median of {args.rounds} rounds ({args.warc}; load before "
          f"{[round(x, 2) for x in load_before]}, after {[round(x, 2) for x in os.getloadavg()]})\n")
    print("| step | datatrove 0.10 as installed | Shammie |")
    print("|---|---|---|")
    for step in ("read", "url_filter", "write"):
        print(f"| {step} | {table['datatrove'][step]} | {table['shammie'][step]} |")
    if args.json:
        json.dump({"runs": runs, "per_record_us": table, "load_before": load_before,
                   "load_after": os.getloadavg()}, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
