"""docs/options.md is generated from the options dataclasses; it must not drift from them."""

from pathlib import Path

from shammie.jobs.config import options_doc

DOC = Path(__file__).resolve().parent.parent / "docs" / "options.md"


def test_the_options_table_in_docs_is_up_to_date():
    assert DOC.read_text() == options_doc(), (
        "docs/options.md is stale; regenerate it with the command at its top")


def test_every_stage_flag_has_a_row():
    text = options_doc()
    for flag in ("--threshold", "--extract-timeout", "--shard-tokens", "--across-snapshots", "--overwrite",
                 "--wait", "`classify.model`", "`dedup.threshold`"):
        assert flag in text, flag
