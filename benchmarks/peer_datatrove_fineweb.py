"""datatrove's FineWeb crawl pipeline as its users run it: the peer side of
benchmarks/crawl_throughput.py, run by the peer's own venv (benchmarks/peer_datatrove_env.sh),
so it imports nothing from Shammie.

    benchmarks/_work/datatrove-venv/bin/python benchmarks/peer_datatrove_fineweb.py CORPUS OUT WORKERS LID_MODEL

The steps and settings of datatrove's `examples/fineweb.py` (trafilatura with
favour_precision and datatrove's default 1 s timeout, English LID at 0.65, Gopher
repetition and quality, C4 without the terminal-punctuation rule, FineWeb quality),
then PII formatting and a JSONL writer; one task per WARC file. Two changes, both
only because this machine has no network: the URL filter's tldextract uses its
bundled public-suffix snapshot, and the language model is read from LID_MODEL (the
same lid.176 file Shammie uses) instead of being downloaded. Prints one line
`RESULT {json}` with the stage seconds and the kept ids.
"""

from __future__ import annotations

import glob
import gzip
import json
import os
import sys
import time


def _seed_model_cache(lid_class, lid_model: str) -> None:
    """Put LID_MODEL where datatrove keeps its downloaded copy, so it finds it instead of downloading."""
    import shutil

    from datatrove.io import cached_assets_path, safely_create_file, strip_protocol

    # the path datatrove's cached_asset_path_or_download computes for the model's URL

    folder = cached_assets_path(library_name="datatrove", namespace="lid", subfolder=lid_class.MODEL_SUBFOLDER)
    target = os.path.join(folder, strip_protocol(lid_class.MODEL_URL).replace("/", "_"))
    safely_create_file(target, lambda: shutil.copyfile(lid_model, target))


def main() -> None:
    corpus, out, workers, lid_model = sys.argv[1], sys.argv[2], int(sys.argv[3]), os.path.abspath(sys.argv[4])
    start = time.monotonic()
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
        URLFilter,
    )
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.lid import FT176LID
    from tldextract import TLDExtract

    _seed_model_cache(FT176LID, lid_model)
    files = sorted(glob.glob(os.path.join(corpus, "*.warc.gz")))
    os.makedirs(out, exist_ok=True)
    paths_file = os.path.join(out, "paths.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(os.path.relpath(p, corpus) for p in files) + "\n")
    url_filter = URLFilter()
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())
    pipeline = [
        WarcReader(corpus, paths_file=paths_file),
        url_filter,
        Trafilatura(favour_precision=True),
        LanguageFilter(),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        PIIFormatter(),
        JsonlWriter(os.path.join(out, "output"), output_filename="${rank}.jsonl.gz"),
    ]
    LocalPipelineExecutor(pipeline=pipeline, tasks=len(files), workers=workers,
                          logging_dir=os.path.join(out, "logs"), skip_completed=False).run()
    stage = time.monotonic() - start
    kept = []
    for path in sorted(glob.glob(os.path.join(out, "output", "*.jsonl.gz"))):
        with gzip.open(path, "rt") as f:
            kept += [json.loads(line)["id"] for line in f]
    print("RESULT " + json.dumps({"stage_seconds": stage, "kept_ids": sorted(kept)}))


if __name__ == "__main__":
    main()
