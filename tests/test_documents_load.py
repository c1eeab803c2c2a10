"""Document folders load with the tools users already have: `datasets`, pandas and polars.

A WARC file whose pages are all dropped gives an empty Parquet file. Written with
`pq.write_table` it would hold one zero-row row group, which `datasets` refuses
("BatchSize must be greater than 0") for the whole folder; `documents.write_table`
writes none, so the folder loads.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shammie.mixing.store_testing import synthetic_documents
from shammie.pipeline import jobdir
from shammie.pipeline.documents import DOCUMENT_SCHEMA, write_table
from warc_fixtures import pages_for_each_filter, write_warc


def _load_with_every_tool(folder: Path, cache: Path) -> dict[str, list[str]]:
    """The ids each tool reads from a document folder, the way its users call it."""
    datasets = pytest.importorskip("datasets")
    import pandas as pd
    polars = pytest.importorskip("polars")

    ds = datasets.load_dataset("parquet", data_files=str(folder / "*.parquet"), split="train", cache_dir=str(cache))
    return {"datasets": sorted(ds["id"]),
            "pandas": sorted(pd.read_parquet(folder)["id"].tolist()),  # the folder: pyarrow skips _SUCCESS, _tasks/
            "polars": sorted(polars.read_parquet(str(folder / "*.parquet"))["id"].to_list())}


def _document_folder_with_an_empty_file(job: Path) -> list[str]:
    """documents/ as the crawl leaves it when one of three WARC files kept no page."""
    tables = [synthetic_documents(40, seed=1, scores=False, prefix="a"), DOCUMENT_SCHEMA.empty_table(),
              synthetic_documents(25, seed=2, scores=False, prefix="c")]
    for i, table in enumerate(tables):
        write_table(table, str(job / "documents" / f"part-{i:05d}.parquet"))
    jobdir.mark_complete(str(job), "documents")
    return sorted(i for t in tables for i in t.column("id").to_pylist())


def test_folder_with_an_empty_file_loads_with_datasets_pandas_and_polars(tmp_path):
    expected = _document_folder_with_an_empty_file(tmp_path / "job")
    empty = pq.ParquetFile(tmp_path / "job" / "documents" / "part-00001.parquet")
    assert empty.metadata.num_rows == 0 and empty.metadata.num_row_groups == 0
    assert empty.schema_arrow == DOCUMENT_SCHEMA  # the columns are there for tools that read the schema
    loaded = _load_with_every_tool(tmp_path / "job" / "documents", tmp_path / "cache")
    assert loaded == {"datasets": expected, "pandas": expected, "polars": expected}


def test_a_zero_row_row_group_is_what_datasets_refuses(tmp_path):
    """Why write_table avoids it: the same folder with pyarrow's default empty file does not load."""
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "documents"
    write_table(synthetic_documents(10, seed=1, scores=False), str(folder / "part-00000.parquet"))
    pq.write_table(DOCUMENT_SCHEMA.empty_table(), folder / "part-00001.parquet")
    assert pq.ParquetFile(folder / "part-00001.parquet").metadata.num_row_groups == 1
    with pytest.raises(Exception, match="generating the dataset|BatchSize"):
        datasets.load_dataset("parquet", data_files=str(folder / "*.parquet"), split="train",
                              cache_dir=str(tmp_path / "cache"))


@pytest.mark.slow
def test_crawl_of_a_warc_whose_pages_are_all_dropped_writes_a_loadable_empty_file(ray_session, tmp_path):
    from shammie.filters.crawl import crawl

    warcs = tmp_path / "warcs"
    warcs.mkdir()
    # every page of this one is built to fail a filter; the other keeps three
    write_warc(warcs / "all-dropped.warc.gz", pages_for_each_filter(seed=7, good=0))
    kept_pages = [p for p in pages_for_each_filter(seed=8, good=3) if p.expect == "kept"]
    write_warc(warcs / "some-kept.warc.gz", kept_pages)
    section = crawl([str(warcs)], str(tmp_path / "job"), progress=False)
    assert section["kept"] == 3 and section["files"] == 2

    folder = tmp_path / "job" / "documents"
    files = sorted(folder.glob("*.parquet"))
    assert len(files) == 2
    empty = [f for f in files if pq.ParquetFile(f).metadata.num_rows == 0]
    assert len(empty) == 1, "the all-dropped WARC should give one empty output file"
    assert pq.ParquetFile(empty[0]).metadata.num_row_groups == 0
    expected = sorted(p.record_id for p in kept_pages)
    loaded = _load_with_every_tool(folder, tmp_path / "cache")
    assert loaded == {"datasets": expected, "pandas": expected, "polars": expected}
