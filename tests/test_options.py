"""pipeline/options.py: one options dataclass -> CLI flags, config schema, validation, docs table."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from shammie.pipeline.options import (OptionsError, add_arguments, from_mapping, from_namespace, given_fields,
                                      option, option_specs, options_table, to_mapping, validate)


@dataclass(frozen=True)
class SampleOptions:
    """A stage's options as the stages declare them."""

    job: str = option(help="job directory", kind="output", positional=True, metavar="JOB")
    threshold: float = option(0.8, help="Jaccard similarity of near-duplicates", minimum=0, maximum=1)
    languages: list[str] = option(("en",), help="languages to keep, or 'all'")
    workers: int | None = option(None, help="concurrent tasks", minimum=1)
    backend: str = option("fasttext", help="kind of model", choices=("fasttext", "transformers"))
    keep_removed: bool = option(False, help="also write the removed documents")
    across_snapshots: bool = option(True, help="deduplicate across snapshots")
    lid_model: str | None = option(None, help="language-id model", kind="path", must_exist=True)
    inputs: list[str] = option(("cc:CC-MAIN-2024-22",), help="WARC inputs", kind="inputs", flag="--input",
                               short="-i", metavar="PATH")
    seq_len: int = option(2048, help="tokens per sequence, 100% packed", minimum=1)
    progress: bool = option(True, help="show a progress bar", yaml=False)
    note: str = option("", help="free text; 100% kept", cli=False)


def parse(argv: list[str], cls=SampleOptions) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sample")
    add_arguments(parser, cls)
    return parser.parse_args(argv)


def cli(argv: list[str], cls=SampleOptions, **fixed):
    return from_namespace(cls, parse(argv, cls), **fixed)


def cli_problems(argv: list[str]) -> list[str]:
    with pytest.raises(OptionsError) as info:
        cli(argv)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def config(mapping, **kwargs):
    kwargs.setdefault("prefix", "dedup")
    return from_mapping(SampleOptions, mapping, **kwargs)


def config_problems(mapping, **kwargs) -> list[str]:
    instance, problems = config(mapping, **kwargs)
    assert instance is None and problems
    return problems


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------- command line


def test_flags_are_generated_from_field_names(in_tmp):
    parser = argparse.ArgumentParser()
    add_arguments(parser, SampleOptions)
    flags = {s for action in parser._actions for s in action.option_strings}
    assert flags == {"-h", "--help", "--threshold", "--languages", "--workers", "--backend", "--keep-removed",
                     "--no-across-snapshots", "--lid-model", "--input", "-i", "--seq-len", "--no-progress"}
    assert "--note" not in flags  # cli=False


def test_defaults_are_not_put_in_the_namespace_so_given_is_visible(in_tmp):
    namespace = parse(["out", "--threshold", "0.5"])
    assert vars(namespace) == {"job": "out", "threshold": 0.5}
    assert given_fields(SampleOptions, namespace) == {"job", "threshold"}


def test_cli_defaults_and_relative_paths(in_tmp):
    options = cli(["out"])
    assert options == SampleOptions(job=str(in_tmp / "out"))
    assert options.languages == ("en",) and options.threshold == 0.8 and options.workers is None
    assert options.progress and options.across_snapshots and not options.keep_removed


def test_bool_flags_store_true_and_negate_true_defaults(in_tmp):
    options = cli(["out", "--keep-removed", "--no-across-snapshots", "--no-progress"])
    assert options.keep_removed is True and options.across_snapshots is False and options.progress is False


def test_a_nullable_bool_gets_both_flags(in_tmp):
    @dataclass(frozen=True)
    class Tri:
        fast: bool | None = option(None, help="go fast")

    assert cli([], Tri).fast is None
    assert cli(["--fast"], Tri).fast is True
    assert cli(["--no-fast"], Tri).fast is False


def test_list_options_are_comma_separated_and_all_stays_a_list(in_tmp):
    assert cli(["out", "--languages", "en, de,,fr"]).languages == ("en", "de", "fr")
    assert cli(["out", "--languages", "all"]).languages == ("all",)
    assert cli_problems(["out", "--languages", ","]) == ["--languages: must not be empty"]


def test_inputs_flag_takes_several_paths_and_repeats(in_tmp):
    (in_tmp / "a,b.warc").write_bytes(b"")
    (in_tmp / "c.warc").write_bytes(b"")
    options = cli(["out", "--input", "a,b.warc", "s3://bucket/x", "-i", "cc:CC-MAIN-2024-10"])
    assert options.inputs == (str(in_tmp / "a,b.warc"), "s3://bucket/x", "cc:CC-MAIN-2024-10")


def test_bounds_are_inclusive_and_named_by_flag(in_tmp):
    assert cli(["out", "--threshold", "1", "--workers", "1"]).threshold == 1.0
    assert cli(["out", "--threshold", "0"]).threshold == 0.0
    assert cli_problems(["out", "--threshold", "1.5", "--workers", "0", "--seq-len", "-3"]) == [
        "--threshold: must be <= 1, got 1.5",
        "--workers: must be >= 1, got 0",
        "--seq-len: must be >= 1, got -3",
    ]


def test_nan_is_not_a_number(in_tmp):
    assert cli_problems(["out", "--threshold", "nan"]) == ["--threshold: must be a number, got nan"]


def test_a_nullable_number_can_be_reset_with_none(in_tmp):
    assert cli(["out", "--workers", "none"]).workers is None


def test_choices_and_types_are_enforced_by_argparse(in_tmp, capsys):
    for argv in (["out", "--backend", "bert"], ["out", "--seq-len", "1.5"], []):
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2
    assert "invalid choice: 'bert'" in capsys.readouterr().err


def test_missing_local_path_is_reported_with_where_it_looked(in_tmp):
    assert cli_problems(["out", "--lid-model", "lid.bin", "--input", "none/*.warc"]) == [
        f"--lid-model: 'lid.bin' does not exist (looked at {in_tmp / 'lid.bin'})",
        f"--input: 'none/*.warc' matches no file (looked at {in_tmp / 'none/*.warc'})",
    ]


def test_output_must_not_be_an_existing_file(in_tmp):
    (in_tmp / "out").write_text("")
    assert cli_problems(["out"]) == [f"JOB: {in_tmp / 'out'} exists and is not a directory"]


def test_fixed_values_win_and_unknown_fixed_names_are_a_programming_error(in_tmp):
    assert cli(["out", "--threshold", "0.5"], threshold=0.9).threshold == 0.9
    assert cli(["out"], note="hi").note == "hi"
    with pytest.raises(TypeError):
        cli(["out"], thresold=0.9)


def test_exclude_leaves_an_option_to_its_default(in_tmp):
    parser = argparse.ArgumentParser()
    add_arguments(parser, SampleOptions, exclude={"workers"})
    with pytest.raises(SystemExit):
        parser.parse_args(["out", "--workers", "2"])
    assert from_namespace(SampleOptions, parser.parse_args(["out"])).workers is None


def test_help_shows_defaults_and_escapes_percent(in_tmp, capsys):
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser, SampleOptions)
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert "Jaccard similarity of near-duplicates (default: 0.8)" in text
    assert "languages to keep, or 'all'; comma-separated (default: en)" in text
    # --no-across-snapshots turns it off: said as what the flag does (issue 24), not as the option's meaning
    assert "turn off (on by default): deduplicate across snapshots" in text
    assert "{fasttext,transformers}" in text and "--input PATH [PATH ...], -i PATH [PATH ...]" in text
    assert "tokens per sequence, 100% packed (default: 2048)" in text
    assert "==SUPPRESS==" not in text


def test_optional_positionals_take_their_defaults(in_tmp):
    @dataclass(frozen=True)
    class Positionals:
        mode: str = option("fast", help="mode", positional=True, choices=("fast", "slow"))
        names: list[str] = option(("a",), help="names", positional=True)

    @dataclass(frozen=True)
    class Number:
        count: int = option(3, help="count", positional=True, minimum=1)

    assert vars(parse([], Positionals)) == {}
    assert cli([], Positionals) == Positionals()
    assert cli(["slow", "x", "y"], Positionals) == Positionals(mode="slow", names=("x", "y"))
    with pytest.raises(OptionsError) as info:
        cli(["medium"], Positionals)
    assert info.value.problems == ["MODE: must be one of fast, slow, got 'medium'"]
    assert vars(parse([], Number)) == {}
    assert cli([], Number).count == 3 and cli(["5"], Number).count == 5


# ---------------------------------------------------------------- config mappings


def test_mapping_fills_defaults_and_resolves_paths_against_base_dir(in_tmp, tmp_path_factory):
    base = tmp_path_factory.mktemp("configs")
    (base / "lid.bin").write_bytes(b"")
    options, problems = config({"job": "out", "lid_model": "lid.bin", "threshold": 1}, base_dir=str(base))
    assert problems == []
    assert options.job == str(base / "out") and options.lid_model == str(base / "lid.bin")
    assert options.threshold == 1.0 and isinstance(options.threshold, float)


def test_touched_keys_resolve_against_the_current_directory(in_tmp, tmp_path_factory):
    base = tmp_path_factory.mktemp("configs")
    (in_tmp / "lid.bin").write_bytes(b"")
    options, problems = config({"job": "out", "lid_model": "lid.bin"}, base_dir=str(base),
                               touched={"dedup.lid_model"})
    assert problems == []
    assert options.lid_model == str(in_tmp / "lid.bin") and options.job == str(base / "out")
    # `--set dedup={...}` touches the whole section
    options, _ = config({"job": "out"}, base_dir=str(base), touched={"dedup"})
    assert options.job == str(in_tmp / "out")


def test_problems_from_set_say_so(in_tmp):
    assert config_problems({"job": "out", "workers": 0}, touched={"dedup.workers"}) == [
        "dedup.workers (from --set): must be >= 1, got 0"]


def test_urls_and_file_urls(in_tmp):
    options, _ = config({"job": "s3://bucket/job", "inputs": ["file://" + str(in_tmp)]})
    assert options.job == "s3://bucket/job" and options.inputs == (str(in_tmp),)


def test_unknown_keys_suggest_the_nearest_and_cli_only_keys_are_named(in_tmp):
    problems = config_problems({"job": "out", "treshold": 0.5, "zzz": 1, "progress": False})
    assert problems[0] == "dedup.treshold: unknown key (did you mean dedup.threshold?)"
    assert problems[1].startswith("dedup.zzz: unknown key (known: job, threshold, languages,")
    assert problems[2] == "dedup.progress: is a command-line option only (--no-progress), not a config key"


def test_wrong_types_name_the_key_path(in_tmp):
    problems = config_problems({"job": 5, "threshold": "high", "workers": True, "seq_len": 1.5,
                                "keep_removed": "yes", "languages": 5, "backend": "fastext", "inputs": []})
    assert problems == [
        "dedup.job: must be a string, got an integer 5 -- quote it: '5'",
        "dedup.threshold: must be a number, got a string 'high'",
        "dedup.languages: must be a list of strings, got an integer 5",
        "dedup.workers: must be an integer, got a boolean True",
        "dedup.backend: must be one of fasttext, transformers, got 'fastext' (did you mean 'fasttext'?)",
        "dedup.keep_removed: must be true or false, got a string 'yes'",
        "dedup.inputs: must not be empty",
        "dedup.seq_len: must be an integer, got a number 1.5",
    ]


def test_yaml_11_booleans_in_string_lists_get_a_quoting_hint(in_tmp):
    data = yaml.safe_load("job: out\nlanguages: [en, no]\nbackend: on\n")
    assert data["languages"] == ["en", False]  # the trap itself
    assert config_problems(data) == [
        "dedup.languages[1]: got the boolean False; YAML 1.1 reads `no` as false -- quote it: 'no' "
        "(likewise off, false)",
        "dedup.backend: got the boolean True; YAML 1.1 reads `yes` as true -- quote it: 'yes' (likewise on, true)",
    ]


def test_a_string_list_may_be_one_string(in_tmp):
    assert config({"job": "out", "languages": "en,de"})[0].languages == ("en", "de")
    assert config({"job": "out", "languages": "all"})[0].languages == ("all",)


def test_nulls_missing_and_required(in_tmp):
    assert config_problems({"threshold": None}) == [
        "dedup.job: is required (job directory)",
        "dedup.threshold: must not be null (Jaccard similarity of near-duplicates)",
    ]
    assert config({"job": "out", "workers": None, "lid_model": None})[1] == []


def test_a_section_that_is_not_a_mapping(in_tmp):
    assert config_problems([1, 2]) == [
        "dedup: must be a mapping of options (job, threshold, languages, workers, backend, keep_removed, "
        "across_snapshots, lid_model, inputs, seq_len, note), got a list"]
    assert config_problems(None) == ["dedup.job: is required (job directory)"]  # an empty section


def test_inputs_check_existence_globs_and_cc_names(in_tmp):
    (in_tmp / "w").mkdir()
    (in_tmp / "w" / "a.warc.gz").write_bytes(b"")
    options, problems = config({"job": "out", "inputs": ["w", "w/*.gz", "cc:CC-MAIN-2024-22"]})
    assert problems == [] and options.inputs == (str(in_tmp / "w"), str(in_tmp / "w/*.gz"), "cc:CC-MAIN-2024-22")
    assert config_problems({"job": "out", "inputs": ["w", "missing", "w/*.txt", "cc:", 7]}) == [
        f"dedup.inputs[1]: 'missing' does not exist (looked at {in_tmp / 'missing'})",
        f"dedup.inputs[2]: 'w/*.txt' matches no file (looked at {in_tmp / 'w/*.txt'})",
        "dedup.inputs[3]: cc: needs a snapshot name, e.g. cc:CC-MAIN-2024-22",
        "dedup.inputs[4]: must be a string, got an integer 7 -- quote it: '7'",
    ]
    # a dry run of a job whose inputs appear later
    assert config({"job": "out", "inputs": ["missing"]}, check_paths=False)[1] == []


def test_prefix_with_or_without_dot_and_top_level(in_tmp):
    assert config_problems({"job": "out", "x": 1}, prefix="dedup.")[0].startswith("dedup.x:")
    assert config_problems({"job": "out", "x": 1}, prefix="")[0].startswith("x:")


# ---------------------------------------------------------------- both sides


def test_cli_and_yaml_give_equal_instances_for_equal_inputs(in_tmp):
    (in_tmp / "lid.bin").write_bytes(b"")
    (in_tmp / "a.warc").write_bytes(b"")
    from_cli = cli(["out", "--threshold", "0.7", "--languages", "en,de", "--workers", "3", "--backend",
                    "transformers", "--keep-removed", "--no-across-snapshots", "--lid-model", "lid.bin",
                    "--input", "a.warc", "--seq-len", "1024"])
    from_yaml, problems = config(yaml.safe_load("""
        job: out
        threshold: 0.7
        languages: [en, de]
        workers: 3
        backend: transformers
        keep_removed: true
        across_snapshots: false
        lid_model: lid.bin
        inputs: a.warc
        seq_len: 1024
    """), base_dir=str(in_tmp))
    assert problems == []
    assert from_cli == from_yaml
    assert hash(from_cli) == hash(from_yaml)  # tuples, not lists: frozen instances stay hashable


def test_round_trip_through_to_mapping_and_yaml(in_tmp):
    (in_tmp / "lid.bin").write_bytes(b"")
    original = cli(["out", "--languages", "en,de", "--lid-model", "lid.bin", "--workers", "2"], note="kept")
    mapping = to_mapping(original)
    assert mapping["languages"] == ["en", "de"] and mapping["inputs"] == ["cc:CC-MAIN-2024-22"]
    assert "progress" not in mapping  # command-line only
    text = yaml.safe_dump(mapping)  # plain types only: safe_dump would refuse tuples
    restored, problems = from_mapping(SampleOptions, yaml.safe_load(text), base_dir="/elsewhere")
    assert problems == [] and restored == original


def test_validate_uses_the_style_of_the_side(in_tmp):
    options = SampleOptions(job="out", threshold=1.5, languages=("en", ""), backend="bert")
    assert validate(options, prefix="dedup") == [
        "dedup.threshold: must be <= 1, got 1.5",
        "dedup.languages[1]: must not be an empty string",
        "dedup.backend: must be one of fasttext, transformers, got 'bert'",
    ]
    assert validate(options, style="cli") == [
        "--threshold: must be <= 1, got 1.5",
        "--languages: must not be an empty string",
        "--backend: must be one of fasttext, transformers, got 'bert'",
    ]
    assert validate(cli(["out"])) == []


def test_cross_field_checks_are_named_per_side(in_tmp):
    @dataclass(frozen=True)
    class Tokenizer:
        tokenizer: str | None = option(None, help="existing model", kind="path")
        train_tokenizer: int | None = option(None, help="vocabulary size to train", minimum=300)

        def check_options(self):
            if self.tokenizer and self.train_tokenizer:
                yield "train_tokenizer", "set either tokenizer or train_tokenizer, not both"

    with pytest.raises(OptionsError) as info:
        cli(["--tokenizer", "s3://b/t.model", "--train-tokenizer", "1000"], Tokenizer)
    assert info.value.problems == ["--train-tokenizer: set either tokenizer or train_tokenizer, not both"]
    assert from_mapping(Tokenizer, {"tokenizer": "s3://b/t.model", "train_tokenizer": 1000}, prefix="shard")[1] == [
        "shard.train_tokenizer: set either tokenizer or train_tokenizer, not both"]


# ---------------------------------------------------------------- docs and declarations


def test_options_table_has_one_row_per_option(in_tmp):
    lines = options_table(SampleOptions, prefix="dedup").splitlines()
    assert lines[0] == "| YAML key | CLI flag | type | default | meaning |"
    assert len(lines) == 2 + len(option_specs(SampleOptions))
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines[2:]}
    assert rows["`dedup.job`"] == "| `dedup.job` | `JOB` | output | required | job directory |"
    assert rows["`dedup.threshold`"] == ("| `dedup.threshold` | `--threshold` | float in [0, 1] | `0.8` | "
                                         "Jaccard similarity of near-duplicates |")
    assert rows["`dedup.languages`"] == ("| `dedup.languages` | `--languages` | str_list | `[en]` | "
                                         "languages to keep, or 'all' |")
    assert rows["`dedup.workers`"] == "| `dedup.workers` | `--workers` | int >= 1 or null | `null` | concurrent tasks |"
    assert rows["`dedup.backend`"].startswith("| `dedup.backend` | `--backend` | str: `fasttext`, `transformers` |")
    assert rows["`dedup.across_snapshots`"].startswith("| `dedup.across_snapshots` | `--no-across-snapshots` | "
                                                       "bool | `true` |")
    assert rows["`dedup.inputs`"].startswith("| `dedup.inputs` | `--input`, `-i` | inputs |")
    assert rows["(command line only)"].startswith("| (command line only) | `--no-progress` |")
    assert rows["`dedup.note`"].startswith("| `dedup.note` | (config only) |")


def test_declaration_mistakes_are_type_errors():
    with pytest.raises(TypeError, match="mutable"):
        option(["en"], help="languages")
    with pytest.raises(TypeError, match="needs help"):
        option(1, help="")

    @dataclass
    class NoOption:
        x: int = 1

    @dataclass
    class BadDefault:
        x: int = option(0, help="count", minimum=1)

    @dataclass
    class BadKind:
        x: dict = option(None, help="mapping")

    @dataclass
    class PathNotStr:
        x: int = option(1, help="path", kind="path")

    for cls, message in [(NoOption, "not declared with option"), (BadDefault, "must be >= 1"),
                         (BadKind, "cannot infer"), (PathNotStr, "needs a str annotation")]:
        with pytest.raises(TypeError, match=message):
            option_specs(cls)


def test_default_factory_values_are_frozen(in_tmp):
    @dataclass(frozen=True)
    class Factory:
        names: list[str] = option(help="names", default_factory=lambda: ["a", "b"])

    assert cli([], Factory).names == ("a", "b")
    assert from_mapping(Factory, {})[0] == Factory(names=("a", "b"))


def test_relative_paths_resolve_on_both_sides_identically_for_the_same_base(in_tmp):
    assert config({"job": "sub/../out"}, base_dir=os.getcwd())[0].job == cli(["sub/../out"]).job == str(in_tmp / "out")
