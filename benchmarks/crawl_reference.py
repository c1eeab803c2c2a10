"""datatrove's own FineWeb pipeline, configured as Shammie's crawl stage is.

Used by the agreement test (tests/test_crawl_agreement.py) and the throughput
benchmark (benchmarks/crawl_throughput.py). Same steps, same thresholds, same
lid.176 model file; two settings differ from FineWeb's production run on purpose,
so that the comparison is deterministic:
- one task per WARC file (trafilatura's dedup cache then spans one file, as in Shammie);
- extraction timeout raised from 1 s to 600 s (a wall-clock timeout drops pages by load).
"""

from __future__ import annotations

import os

from shammie.filters.fineweb import make_language_filter, resolve_lid_model
from shammie.filters.url_blocklist import offline_tldextract


def datatrove_fineweb_pipeline(data_folder: str, files: list[str], output_folder: str, lid_model: str | None = None,
                               timeout: float = 600):
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    url_filter = URLFilter()
    # tldextract would fetch the public suffix list over the network; no network here
    url_filter.tldextractor = offline_tldextract()
    paths_file = os.path.join(output_folder, "paths.txt")
    os.makedirs(output_folder, exist_ok=True)
    with open(paths_file, "w") as f:
        f.write("\n".join(os.path.relpath(p, data_folder) for p in files) + "\n")
    return [
        WarcReader(data_folder, paths_file=paths_file),
        url_filter,
        Trafilatura(favour_precision=True, timeout=timeout),
        make_language_filter(["en"], 0.65, resolve_lid_model(lid_model)),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        PIIFormatter(),
        JsonlWriter(os.path.join(output_folder, "output"), output_filename="${rank}.jsonl.gz"),
    ]


def run_datatrove(data_folder: str, files: list[str], output_folder: str, workers: int = 1,
                  lid_model: str | None = None) -> list[dict]:
    """Run datatrove's LocalPipelineExecutor (one task per file); return the kept documents."""
    import glob
    import gzip
    import json

    from datatrove.executor import LocalPipelineExecutor

    pipeline = datatrove_fineweb_pipeline(data_folder, files, output_folder, lid_model)
    LocalPipelineExecutor(pipeline=pipeline, tasks=len(files), workers=workers,
                          logging_dir=os.path.join(output_folder, "logs"), skip_completed=False).run()
    docs = []
    for path in sorted(glob.glob(os.path.join(output_folder, "output", "*.jsonl.gz"))):
        with gzip.open(path, "rt") as f:
            docs += [json.loads(line) for line in f]
    return docs
