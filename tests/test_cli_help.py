"""`--help` of every command, and what a mistyped command or flag gets (issue 24).

Built from the real parsers (no Ray, no data): every option explains itself, states its default
once, a `--no-X` flag says what it turns off, `classify` speaks of quality (not edu), and a typo
gets the one "did you mean" the YAML validator gives too (`options.closest`)."""

from __future__ import annotations

import argparse

import pytest

from shammie.jobs.cli import build_parser, main, subcommands


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """'dedup' -> its parser, 'edu score' -> the nested one, for every command."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for step, child in action.choices.items():
                    walk(f"{name} {step}", child)

    for command in subcommands():
        top = build_parser(only=command)
        sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        walk(command, sub.choices[command])
    return found


PARSERS = _parsers()


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    formatter = parser._get_formatter()
    return {(action.option_strings or [action.dest])[0]: formatter._expand_help(action) if action.help else ""
            for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))}


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_option_has_help_that_states_its_default_once(command):
    for flag, text in _helps(PARSERS[command]).items():
        assert text.strip(), f"shammie {command} {flag} has no help"
        assert text.lower().count("(default") <= 1, f"shammie {command} {flag}: {text!r}"
        assert "(default: None)" not in text, f"shammie {command} {flag}: {text!r}"
        assert "(default: )" not in text, f"shammie {command} {flag}: {text!r}"


def test_a_help_that_uses_the_word_default_still_states_the_default():
    # "default packed sequence length" is what --seq-len is, not its default: main showed none
    # (docs/options.md says 2048); `run --set` said "(default: )"
    assert _helps(PARSERS["shard"])["--seq-len"].endswith("(default: 2048)")
    assert "default" not in _helps(PARSERS["run"])["--set"].lower()
    assert "(default: text)" in _helps(PARSERS["decontaminate"])["--text-column"]


def test_negative_flags_say_what_they_turn_off():
    for command, parser in PARSERS.items():
        for flag, text in _helps(parser).items():
            if flag.startswith("--no-"):
                assert not text.startswith(("show", "first", "turn off (on by default)")), \
                    f"shammie {command} {flag} is described in the positive: {text!r}"
    assert _helps(PARSERS["dedup"])["--no-progress"].startswith("hide progress bars")
    assert _helps(PARSERS["dedup"])["--no-exact"].startswith("skip the exact-duplicate pass")


def test_classify_speaks_of_quality_not_edu():
    for command in ("classify train", "classify score"):
        for flag, text in _helps(PARSERS[command]).items():
            assert "edu" not in text.lower(), f"shammie {command} {flag}: {text!r}"


def test_export_has_no_progress_like_every_command_that_writes():
    for command in ("crawl", "dedup", "shard", "export", "edu score", "edu annotate", "run"):
        assert "--no-progress" in _helps(PARSERS[command]), command


@pytest.mark.parametrize("argv, hint", [
    (["dedup", "/nonexistent", "--treshold", "0.5"], "--treshold (did you mean --threshold?)"),
    (["dedup", "/nonexistent", "--treshold=0.5"], "(did you mean --threshold?)"),
    (["edu", "score", "/nonexistent", "--modle", "m.bin"], "--modle (did you mean --model?)"),
    (["dedpu", "/nonexistent"], "unknown command 'dedpu' (did you mean dedup?)"),
])
def test_a_mistyped_flag_or_command_gets_did_you_mean(argv, hint, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert hint in err and "Traceback" not in err
    # one line, as the README promises for user mistakes (main printed argparse's usage block first)
    assert len(err.strip().splitlines()) == 1, err


def test_a_missing_argument_is_one_line_too(capsys):
    with pytest.raises(SystemExit) as info:
        main(["dedup"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("shammie dedup: error: ") and "--help" in err


def test_an_abbreviation_argparse_accepts_is_not_a_typo():
    from shammie.jobs.cli import _unknown_flags

    assert _unknown_flags(PARSERS["shard"], ["DIR", "--group", "site", "--top=3", "--", "--x"]) == []
    assert _unknown_flags(PARSERS["shard"], ["DIR", "--grop-by", "site"]) == ["--grop-by"]


def test_decontaminate_names_where_its_removal_list_really_is():
    """main's epilog said decontaminated/_removed/removed.parquet; the stage writes it in
    JOB/_meta/decontaminated/ (docs/job-directory.md: a stage folder holds its data files only)."""
    from shammie.filters.decontaminate import REMOVED

    text = PARSERS["decontaminate"].epilog
    assert f"JOB/_meta/decontaminated/{REMOVED}" in text and "_removed/" not in text


def test_an_error_of_a_nested_command_names_the_command_as_typed(capsys):
    """`shammie edu subset` failing says `shammie edu subset: error:` (main said `shammie edu: error:`)."""
    assert main(["edu", "subset", "/nonexistent-job", "--threshold", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shammie edu subset: error: ") and "Traceback" not in err


def test_did_you_mean_is_not_fooled_by_the_dashes():
    from shammie.pipeline.options import closest

    assert closest("--nope", ["--compare", "--output", "--steps"]) is None  # main said --compare
    assert closest("--modle", ["--model", "--output"]) == "--model"
    assert closest("grop_by", ["group_by", "top"]) == "group_by"
