"""Job config validation, --set overrides and --dry-run: no stage and no Ray needed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from shammie.jobs.cli import main
from shammie.jobs.config import apply_overrides, load_config, parse_override
from shammie.pipeline.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def write_config(folder: Path, text: str, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def warc_dir(tmp_path: Path) -> Path:
    d = tmp_path / "warc"
    d.mkdir()
    (d / "a.warc.gz").write_bytes(b"")
    return d


def minimal(warc_dir: Path) -> str:
    return textwrap.dedent(f"""
        input: [{warc_dir.name}]
        output: out/job
        shard: {{group_by: site}}
    """)


def errors_of(path: Path, overrides=()) -> str:
    with pytest.raises(UserError) as info:
        load_config(str(path), list(overrides))
    return str(info.value)


def test_minimal_config_fills_defaults_and_resolves_paths_against_the_config_folder(tmp_path, warc_dir, monkeypatch):
    monkeypatch.chdir("/")
    cfg = load_config(str(write_config(tmp_path, minimal(warc_dir))))
    assert cfg["input"] == [str(warc_dir)]
    assert cfg.output == str(tmp_path / "out" / "job")
    assert cfg.store == str(tmp_path / "out" / "job" / "store")
    assert cfg["name"] == "job"  # the file's stem
    assert cfg.stage("crawl")["languages"] == ["en"]
    assert cfg.stage("crawl")["language_threshold"] == 0.65
    assert cfg.enabled("crawl") and cfg.enabled("dedup") and cfg.enabled("shard")
    assert not cfg.enabled("edu")


def test_unknown_keys_are_named_with_a_suggestion(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir) + "crawl: {langauges: [en]}\noutptu: x\n")
    message = errors_of(path)
    assert "crawl.langauges: unknown key (did you mean crawl.languages?)" in message
    assert "outptu: unknown key (did you mean output?)" in message


def test_wrong_types_name_the_key_and_the_value(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir).replace("shard: {group_by: site}", "") + textwrap.dedent("""
        workers: two
        crawl: {language_threshold: high, keep_removed: "yes", languages: 5}
        dedup: true
        shard: {seq_len: 1.5, group_by: site}
    """))
    message = errors_of(path)
    assert "workers: must be an integer, got a string 'two'" in message
    assert "crawl.language_threshold: must be a number, got a string 'high'" in message
    assert "crawl.keep_removed: must be true or false" in message
    assert "crawl.languages: must be a list of strings" in message
    assert "dedup: must be a mapping of options" in message
    assert "shard.seq_len: must be an integer, got a number 1.5" in message


def test_every_problem_is_reported_at_once(tmp_path, warc_dir):
    path = write_config(tmp_path, """
        input: [missing-folder/]
        workers: 0
        crawl: {language_threshold: 1.5}
    """)
    message = errors_of(path)
    lines = [ln for ln in message.splitlines() if ln.startswith("  - ")]
    # input, output, workers, threshold (shard's default group-by works without edu since issue 24)
    assert len(lines) == 4, message
    assert "output: is required" in message
    assert "input[0]: 'missing-folder/' does not exist" in message
    assert "workers: must be >= 1, got 0" in message
    assert "crawl.language_threshold: must be <= 1" in message


def test_missing_paths_and_globs_are_errors(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir).replace(f"[{warc_dir.name}]", "[nothing/*.warc.gz]")
                        + "crawl: {lid_model: models/lid.bin}\n")
    message = errors_of(path)
    assert "input[0]: 'nothing/*.warc.gz' matches no file" in message
    assert f"crawl.lid_model: 'models/lid.bin' does not exist (looked at {tmp_path / 'models' / 'lid.bin'})" in message


def test_remote_and_cc_inputs_are_not_checked_locally(tmp_path):
    path = write_config(tmp_path, """
        input: ["s3://bucket/warc/", "cc:CC-MAIN-2024-22"]
        output: s3://bucket/job
        shard: {group_by: site, store: s3://bucket/store}
    """)
    cfg = load_config(str(path))
    assert cfg["input"] == ["s3://bucket/warc/", "cc:CC-MAIN-2024-22"]
    assert cfg.output == "s3://bucket/job"
    assert cfg.store == "s3://bucket/store"


def test_edu_enabled_without_a_model_says_how_to_train_one(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir) + "\nedu: {enabled: true}\n")
    message = errors_of(path)
    assert "edu.model: is required when edu is enabled" in message
    assert "shammie edu train" in message
    # one message for one mistake (main also said "edu.model: is required (the model: ...)", as docs/jobs.md does not)
    assert message.count("edu.model:") == 1, message


def test_shipped_fineweb_edu_config_fails_on_its_missing_model_with_the_training_hint():
    message = errors_of(REPO / "jobs" / "fineweb-edu.yaml")
    assert "edu.model:" in message and "does not exist" in message and "shammie edu train" in message
    assert message.count("edu.model:") == 1, message  # not also "is required" when the path is the mistake


def test_group_by_edu_needs_the_edu_stage(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir).replace("group_by: site", "group_by: edu"))
    assert "shard.group_by: 'edu' needs edu scores" in errors_of(path)


def test_tokenizer_and_train_tokenizer_are_exclusive(tmp_path, warc_dir):
    (tmp_path / "tok.model").write_bytes(b"x")
    path = write_config(tmp_path, minimal(warc_dir).replace(
        "shard: {group_by: site}", "shard: {group_by: site, tokenizer: tok.model, train_tokenizer: 1000}"))
    assert "shard.train_tokenizer: set either tokenizer or train_tokenizer" in errors_of(path)


def test_choices_are_enforced(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir).replace(
        "shard: {group_by: site}", "shard: {group_by: site, tokenizer_type: wordpiece}"))
    assert "shard.tokenizer_type: must be one of bpe, unigram, got 'wordpiece'" in errors_of(path)


def test_invalid_yaml_and_non_mapping_top_level(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed\n")
    assert "is not valid YAML" in errors_of(bad)
    bad.write_text("- just\n- a list\n")
    assert "top level must be a mapping" in errors_of(bad)
    assert "does not exist" in errors_of(tmp_path / "absent.yaml")


def test_parse_override_uses_yaml_values():
    assert parse_override("crawl.limit_files=2") == (["crawl", "limit_files"], 2)
    assert parse_override("crawl.languages=[en, de]") == (["crawl", "languages"], ["en", "de"])
    assert parse_override("dedup.across_snapshots=true") == (["dedup", "across_snapshots"], True)
    assert parse_override("shard.top_k=") == (["shard", "top_k"], None)
    assert parse_override("name=a=b") == (["name"], "a=b")
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_override("crawl.limit_files")
    with pytest.raises(UserError, match="empty key"):
        parse_override("crawl..x=1")


def test_apply_overrides_creates_sections_and_refuses_to_descend_into_values():
    data, touched = apply_overrides({"crawl": {"languages": ["en"]}, "name": "x"},
                                    ["edu.threshold=4", "crawl.languages=[fr]"])
    assert data == {"crawl": {"languages": ["fr"]}, "name": "x", "edu": {"threshold": 4}}
    assert touched == {"edu.threshold", "crawl.languages"}
    with pytest.raises(UserError, match="name is not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_overrides_are_validated_and_their_paths_resolve_against_the_current_directory(tmp_path, warc_dir, monkeypatch):
    path = write_config(tmp_path, minimal(warc_dir))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(str(path), ["output=here", "crawl.limit_files=3", "shard.seq_len=128"])
    assert cfg.output == str(elsewhere / "here")
    assert cfg.stage("crawl")["limit_files"] == 3
    assert cfg.stage("shard")["seq_len"] == 128
    message = errors_of(path, ["crawl.limit_file=3", "workers=many"])
    assert "crawl.limit_file (from --set): unknown key (did you mean crawl.limit_files?)" in message
    assert "workers (from --set): must be an integer" in message


def test_shipped_configs_validate(tmp_path):
    fineweb = load_config(str(REPO / "jobs" / "fineweb.yaml"))
    assert fineweb["input"] == ["cc:CC-MAIN-2024-22"]
    assert not fineweb.enabled("edu") and fineweb.stage("shard")["group_by"] == "site"
    model = tmp_path / "edu.bin"
    model.write_bytes(b"model")
    edu = load_config(str(REPO / "jobs" / "fineweb-edu.yaml"), [f"edu.model={model}"])
    assert edu.enabled("edu") and edu.stage("edu")["threshold"] == 3 and edu.stage("edu")["model"] == str(model)
    example = load_config(str(REPO / "jobs" / "example-local.yaml"), prepare_example=False)
    assert example["input"] == [str(REPO / "examples" / "warc")]
    assert example.output == str(REPO / "out" / "example")


# ---------------------------------------------------------------- the CLI


def test_cli_exits_2_with_the_key_in_the_message(tmp_path, warc_dir, capsys):
    path = write_config(tmp_path, minimal(warc_dir) + "\ncrawl: {limit_files: -1}\n")
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "shammie run: error: invalid config" in err
    assert "crawl.limit_files: must be >= 1, got -1" in err
    assert "Traceback" not in err


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, warc_dir, capsys):
    model = tmp_path / "edu.bin"
    model.write_bytes(b"m")
    path = write_config(tmp_path, minimal(warc_dir).replace("group_by: site", "group_by: edu, train_tokenizer: 500")
                        + f"\nedu: {{enabled: true, model: {model.name}, threshold: 2.5}}\n")
    assert main(["run", str(path), "--dry-run", "--set", "crawl.limit_files=1", "--ray-address", "10.0.0.1:6379"]) == 0
    out = capsys.readouterr().out
    job = tmp_path / "out" / "job"
    assert f"output:  {job}" in out
    assert "ray:     10.0.0.1:6379" in out
    assert "--set:   crawl.limit_files=1" in out
    order = [out.index(f"{i}. {name}") for i, name in enumerate(["crawl", "dedup", "edu_score", "edu_subset", "shard"], 1)]
    assert order == sorted(order)
    assert f"documents -> {job / 'deduped'}" in out
    assert f"deduped -> {job / 'scored'}" in out
    assert f"scored -> {job / 'edu-2.5'}" in out
    assert f"edu-2.5 -> {job / 'store'}" in out
    assert "limit_files: 1" in out
    assert not job.exists()


def test_dry_run_marks_complete_steps_as_skipped(tmp_path, warc_dir, capsys):
    path = write_config(tmp_path, minimal(warc_dir))
    documents = tmp_path / "out" / "job" / "documents"
    documents.mkdir(parents=True)
    (tmp_path / "out" / "job" / "_meta" / "documents").mkdir(parents=True)
    (tmp_path / "out" / "job" / "_meta" / "documents" / "_SUCCESS").write_text("{}")
    (tmp_path / "out" / "job" / "_meta" / "deduped" / "_tasks").mkdir(parents=True)
    (tmp_path / "out" / "job" / "_meta" / "deduped" / "_tasks" / "x.json").write_text("{}")
    assert main(["run", str(path), "--dry-run", "--set", "dedup.enabled=true"]) == 0
    out = capsys.readouterr().out
    assert "1. crawl" in out and "[done, skip if unchanged]" in out.splitlines()[[i for i, ln in enumerate(out.splitlines()) if "1. crawl" in ln][0]]
    assert "[resume]" in [ln for ln in out.splitlines() if "2. dedup" in ln][0]
    assert "[run]" in [ln for ln in out.splitlines() if "3. shard" in ln][0]


def test_disabling_every_stage_is_an_error(tmp_path, warc_dir):
    path = write_config(tmp_path, minimal(warc_dir))
    message = errors_of(path, ["crawl.enabled=false", "dedup.enabled=false", "shard.enabled=false"])
    assert "every stage is disabled" in message


def test_shipped_configs_show_every_stage_block():
    # docs/jobs.md sends users to these files to see the format
    for name in ("fineweb.yaml", "fineweb-edu.yaml", "example-local.yaml"):
        data = yaml.safe_load((REPO / "jobs" / name).read_text())
        assert {"input", "output", "crawl", "dedup", "edu", "shard"} <= set(data), name


def test_globs_are_checked_but_passed_on_for_the_crawl_stage_to_expand(tmp_path, warc_dir):
    (warc_dir / "sub").mkdir()
    (warc_dir / "sub" / "b.warc.gz").write_bytes(b"")
    path = write_config(tmp_path, minimal(warc_dir).replace(f"[{warc_dir.name}]", '["warc/**/*.warc.gz"]'))
    assert load_config(str(path))["input"] == [str(warc_dir / "**" / "*.warc.gz")]
