"""read_yaml: every way a config file can be unreadable is a one-line UserError, never a traceback.

Several of these were wrong before read_yaml was rewritten: a folder or a UTF-16 file gave a
traceback, duplicate keys were accepted silently, and YAML syntax errors spanned several lines."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from shammie.jobs.cli import main
from shammie.jobs.config import load_config, read_yaml
from shammie.pipeline.errors import UserError


def read_error(path: Path) -> str:
    with pytest.raises(UserError) as info:
        read_yaml(str(path))
    message = str(info.value)
    assert "\n" not in message, f"expected one line, got {message!r}"
    return message


def test_a_missing_file_is_named(tmp_path):
    assert read_error(tmp_path / "nope.yaml") == f"config {tmp_path / 'nope.yaml'} does not exist"


def test_a_folder_is_refused_with_a_hint_instead_of_a_traceback(tmp_path):
    message = read_error(tmp_path)
    assert message.startswith(f"config {tmp_path} is a folder")
    assert "job.yaml" in message


def test_utf16_with_a_byte_order_mark_is_read_like_utf8(tmp_path):
    # what PowerShell's `>` and some Windows editors write; YAML itself allows it
    for encoding in ("utf-16", "utf-16-be", "utf-8-sig"):
        path = tmp_path / f"{encoding}.yaml"
        bom = {"utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
        path.write_bytes(bom + "output: out/job\ncrawl: {languages: [de]}\n".encode(encoding))
        assert read_yaml(str(path)) == {"output": "out/job", "crawl": {"languages": ["de"]}}, encoding


def test_utf16_without_a_byte_order_mark_says_save_as_utf8(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes("output: out/job\n".encode("utf-16-le"))
    message = read_error(path)
    assert "UTF-16" in message and "save it as UTF-8" in message


def test_a_non_utf8_file_names_the_byte_and_line(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes("name: x\noutput: caf\u00e9\n".encode("latin-1"))
    message = read_error(path)
    assert "is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8" in message


def test_invalid_yaml_is_one_line_with_the_line_number(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output: out/job\ncrawl:\n  languages: [en, de\n  limit_files: 2\n")
    message = read_error(path)
    assert message.startswith(f"config {path} is not valid YAML: line 4")


def test_a_tab_indent_is_one_line_too(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("crawl:\n\tlimit_files: 2\n")
    assert "is not valid YAML: line 2" in read_error(path)


def test_duplicate_top_level_keys_name_both_lines(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output: a\nname: x\noutput: b\n")
    assert read_error(path) == (f"config {path}: duplicate key output on lines 1 and 3 "
                                "(YAML would silently keep only the last; remove one)")


def test_duplicate_nested_keys_name_the_dotted_path(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output: a\ncrawl:\n  languages: [en]\n  limit_files: 2\n  languages: [de]\n")
    assert "duplicate key crawl.languages on lines 3 and 5" in read_error(path)


def test_duplicate_keys_in_a_flow_mapping_inside_a_list(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("items:\n  - {a: 1}\n  - {b: 1, b: 2}\n")
    assert "duplicate key items[1].b twice on line 3" in read_error(path)


def test_merge_keys_may_be_overridden(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("common: &common {limit_files: 2, languages: [en]}\ncrawl:\n  <<: *common\n  limit_files: 5\n")
    assert read_yaml(str(path))["crawl"] == {"limit_files": 5, "languages": ["en"]}


def test_the_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("- output: a\n")
    message = read_error(path)
    assert "the top level must be a mapping of keys" in message and message.endswith("got a list")


def test_an_empty_file_is_an_empty_config(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("# nothing yet\n")
    assert read_yaml(str(path)) == {}


def test_two_documents_are_refused(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("output: a\n---\noutput: b\n")
    assert "is not valid YAML: line 2" in read_error(path)


@pytest.mark.parametrize("content", [b"\xff\xfeo\x00u\x00t\x00:\x00 \x00\x00\xd8\n\x00",  # lone surrogate
                                     b"output: a\noutput: b\n", b"a: [1\n"])
def test_load_config_and_the_cli_report_them_without_a_traceback(tmp_path, capsys, content):
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError):
        load_config(str(path))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err


def test_the_cli_reports_a_folder_given_as_config(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--dry-run"]) == 2
    assert "is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- environment variables (issue 24)


def test_environment_variables_are_expanded_in_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAMMIE_TEST_ROOT", str(tmp_path / "jobs"))
    monkeypatch.setenv("SHAMMIE_TEST_LANG", "de")
    monkeypatch.delenv("SHAMMIE_TEST_UNSET", raising=False)
    path = tmp_path / "job.yaml"
    path.write_text("output: ${SHAMMIE_TEST_ROOT}/web\n"
                    "crawl: {enabled: false}\n"
                    "shard: {group_by: '${SHAMMIE_TEST_UNSET:-site}'}\n"
                    "name: 'cost $${NOT_A_VAR} ${SHAMMIE_TEST_LANG}'\n")
    data = read_yaml(str(path))
    assert data["output"] == f"{tmp_path}/jobs/web"
    assert data["shard"]["group_by"] == "site"
    assert data["name"] == "cost ${NOT_A_VAR} de"
    assert load_config(str(path)).output == str(tmp_path / "jobs" / "web")


def test_an_unset_environment_variable_is_a_one_line_error_naming_key_and_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SHAMMIE_TEST_UNSET", raising=False)
    path = tmp_path / "job.yaml"
    path.write_text("output: ${SHAMMIE_TEST_UNSET}/web\ninput: [a.warc, '${SHAMMIE_TEST_UNSET}']\n")
    message = read_error(path)
    assert "output: the environment variable SHAMMIE_TEST_UNSET is not set" in message
    assert "input[1]: the environment variable SHAMMIE_TEST_UNSET is not set" in message
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "SHAMMIE_TEST_UNSET is not set" in err
