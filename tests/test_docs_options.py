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


def test_each_section_is_one_table_of_keys_a_config_may_set():
    """Issue 24: the edu section was two tables glued together, and classify listed --kind and
    --backend, which neither its command nor its config section takes."""
    import re

    from shammie.jobs.config import load_config

    text = options_doc()
    sections = text.split("\n### ")[1:]
    for section in sections:
        assert section.count("| YAML key |") <= 1, section.splitlines()[0]
    classify = next(s for s in sections if s.startswith("`classify`"))
    assert "`classify.kind`" not in classify and "`classify.backend`" not in classify
    assert "edu" not in classify.split("\n", 1)[1].lower()
    edu = next(s for s in sections if s.startswith("`edu`"))
    for fixed in ("`edu.kind`", "`edu.input_stage`", "`edu.output_stage`", "`edu.output`"):
        assert fixed not in edu
    # every key the doc lists for a section is accepted by the config validator (no "set by the job itself")
    for section in sections:
        name = section.split("`")[1]
        if name in ("crawl",):
            continue
        for key in re.findall(rf"\| `{name}\.(\w+)` \|", section):
            try:
                load_config(None, data={"output": "/tmp/x", "crawl": {"enabled": False}, name: {key: None}},
                            check_paths=False)
            except Exception as e:  # noqa: BLE001 - only the "set by the job" refusal matters here
                assert "set by the job itself" not in str(e), f"{name}.{key}"


def test_a_command_line_only_negative_flag_is_described_as_typed():
    """A `--no-X` row that has no YAML key says what giving the flag does (main's row read
    "`--no-progress` | bool | `true` | show progress bars", the opposite of the flag)."""
    rows = [line for line in options_doc().splitlines() if "| `--no-progress` |" in line]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == "(command line only)" and cells[3] == "`false`", row
        assert not cells[4].startswith(("show", "say")), row
