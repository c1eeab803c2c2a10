"""Stage options with one source: a dataclass whose fields generate the CLI and the config.

Each command declares its options once, as a dataclass of `option(...)` fields
(the Dolma pattern). From that one declaration this module derives:

- the argparse flags (`add_arguments`) and the instance built from parsed flags
  (`from_namespace`),
- the job-YAML section schema: reading a mapping with unknown-key suggestions, type
  errors that name the key, paths resolved against the config's folder (`from_mapping`),
- validation shared by both sides (`validate`: types, ranges, choices),
- the plain mapping written back to `job.yaml` (`to_mapping`) and the Markdown options
  table for `docs/` (`options_table`).

Problems are collected, not raised one at a time: a user sees every mistake in one
run, one line each, named the way they typed it (`--threshold` on the command line,
`dedup.threshold` in a config).

Why hand-written instead of pydantic or jsonschema: neither is a dependency, the
options are a few dozen scalars, lists and paths, and the error text (the key path,
"did you mean", the YAML 1.1 boolean hint) is the part that matters to users; a
generic validator's messages would have to be rewritten anyway.

Declaring options::

    @dataclass(frozen=True)
    class DedupOptions:
        job: str = option(help="job directory", kind="output", positional=True, metavar="JOB")
        threshold: float = option(0.8, help="Jaccard similarity of near-duplicates", minimum=0, maximum=1)
        languages: list[str] = option(("en",), help="languages to keep, or 'all'")
        progress: bool = option(True, help="show a progress bar", yaml=False)   # CLI: --no-progress

Kinds are inferred from the annotation (bool, int, float, str, `list[str]` -> str_list,
`X | None` -> nullable); `kind="path"` (a local path or URL), `"output"` (a folder)
and `"inputs"` (paths, URLs, globs, `cc:` snapshots) are given explicitly. List
values are held as tuples in instances (hashable, immutable like the defaults) and
written as lists by `to_mapping`.

A dataclass may define `check_options(self) -> Iterable[tuple[str, str]]` yielding
`(field_name, message)` pairs for checks across fields; `validate` names the field
the way the current side spells it.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import difflib
import functools
import glob
import math
import os
import re
import types
import typing
from typing import Any, Iterable, Mapping

from shammie.pipeline.errors import ShammieError

__all__ = [
    "OptionsError", "option", "closest", "add_arguments", "from_namespace", "from_mapping", "validate", "to_mapping",
    "options_table", "given_fields", "option_specs", "OptionSpec",
]

METADATA_KEY = "shammie.option"
KINDS = ("bool", "int", "float", "str", "str_list", "path", "output", "inputs")
LIST_KINDS = ("str_list", "inputs")
STRING_KINDS = ("str", "path", "output")
GLOB_CHARS = frozenset("*?[")
STYLES = ("yaml", "cli")


class OptionsError(ShammieError, ValueError):
    """Invalid option values; `.problems` holds one line per problem, each naming its key or flag."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name a mistyped `word` most likely meant, or None: the one "did you mean" of
    Shammie, for config keys, choices and command-line flags alike. Flags are compared without their
    leading dashes, which otherwise make any two short flags look alike (`--nope` and `--compare`)."""
    bare = {str(k).lstrip("-") or str(k): str(k) for k in known}
    guess = difflib.get_close_matches(str(word).lstrip("-") or str(word), list(bare), n=1)
    return bare[guess[0]] if guess else None


# ---------------------------------------------------------------- declaring


@dataclasses.dataclass(frozen=True)
class _Declared:
    """What `option()` stores in the field's metadata (the kind may still be inferred)."""

    help: str
    off_help: str | None
    kind: str | None
    choices: tuple
    minimum: float | None
    maximum: float | None
    flag: str | None
    short: str | None
    metavar: str | None
    positional: bool
    nargs: str | None
    cli: bool
    yaml: bool
    must_exist: bool


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option of a dataclass, fully resolved: kind inferred, default known."""

    name: str
    kind: str
    nullable: bool
    required: bool
    declared: _Declared
    field: dataclasses.Field

    def default(self) -> Any:
        if self.field.default_factory is not dataclasses.MISSING:
            return _freeze(self.field.default_factory())
        return self.field.default

    @property
    def help(self) -> str:
        return self.declared.help

    @property
    def flag(self) -> str:
        if self.declared.flag:
            return self.declared.flag
        dashed = self.name.replace("_", "-")
        if self.kind == "bool" and not self.required and self.field.default is True:
            return f"--no-{dashed}"
        return f"--{dashed}"

    @property
    def metavar(self) -> str:
        return self.declared.metavar or self.name.upper()

    def cli_label(self) -> str:
        return self.metavar if self.declared.positional else self.flag


def option(default: Any = dataclasses.MISSING, *, help: str, off_help: str | None = None, kind: str | None = None,
           choices: tuple = (),
           minimum: float | None = None, maximum: float | None = None, flag: str | None = None,
           short: str | None = None, metavar: str | None = None, positional: bool = False,
           nargs: str | None = None, cli: bool = True, yaml: bool = True, must_exist: bool = False,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is a command-line flag and a config key. No default = required.

    `help` says what the option means (the config key, the docs table); `off_help` is the --help of
    the `--no-NAME` flag a boolean that defaults to true gets, which turns it off: said as what
    the flag does ("hide progress bars"), not as what the option means."""
    if isinstance(default, (list, dict, set)):
        # dataclasses refuses these too, but with advice (default_factory) that hides the intent here
        raise TypeError(f"option default {default!r} is mutable; use a tuple for a list default")
    if kind is not None and kind not in KINDS:
        raise TypeError(f"option kind {kind!r} is not one of {', '.join(KINDS)}")
    if not help:
        raise TypeError("option() needs help text: it is the flag's --help and the docs table's meaning")
    declared = _Declared(help=help, off_help=off_help, kind=kind, choices=tuple(choices), minimum=minimum, maximum=maximum,
                         flag=flag, short=short, metavar=metavar, positional=positional, nargs=nargs,
                         cli=cli, yaml=yaml, must_exist=must_exist)
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={METADATA_KEY: declared})


@functools.lru_cache(maxsize=None)
def option_specs(cls: type) -> tuple[OptionSpec, ...]:
    """Every option of an options dataclass, in declaration order; TypeError for a bad declaration."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        declared = f.metadata.get(METADATA_KEY)
        if declared is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option(help=...): every field of an "
                            "options dataclass is an option (use cli=False, yaml=False for internal ones)")
        kind, nullable = _infer_kind(cls, f.name, hints[f.name], declared.kind)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is None:
            nullable = True
        spec = OptionSpec(name=f.name, kind=kind, nullable=nullable, required=required, declared=declared, field=f)
        if not required:
            _, problems = _convert(spec, spec.default(), label=f"{cls.__name__}.{f.name} default", style="yaml",
                                   base=None, check_paths=False)
            if problems:
                raise TypeError("; ".join(problems))
        specs.append(spec)
    return tuple(specs)


def _infer_kind(cls: type, name: str, annotation: Any, explicit: str | None) -> tuple[str, bool]:
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"{cls.__name__}.{name}: a union other than `X | None` is not an option type")
        annotation = args[0]
        origin = typing.get_origin(annotation)
    item_args = typing.get_args(annotation)
    is_str_list = (origin in (list, tuple, collections.abc.Sequence)
                   and item_args[:1] == (str,) and item_args[1:] in ((), (Ellipsis,)))
    inferred = {bool: "bool", int: "int", float: "float", str: "str"}.get(annotation)
    if is_str_list:
        inferred = "str_list"
    if explicit is None:
        if inferred is None:
            raise TypeError(f"{cls.__name__}.{name}: cannot infer an option kind from {annotation!r}; "
                            f"pass kind= (one of {', '.join(KINDS)})")
        return inferred, nullable
    expected = "str_list" if explicit in LIST_KINDS else "str" if explicit in STRING_KINDS else explicit
    if inferred != expected:
        raise TypeError(f"{cls.__name__}.{name}: kind {explicit!r} needs a "
                        f"{'list[str]' if expected == 'str_list' else expected} annotation, got {annotation!r}")
    return explicit, nullable


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, exclude: Iterable[str] = (),
                  helps: Mapping[str, str] | None = None) -> None:
    """Add one argument per CLI option of `cls`; `helps` replaces the help of some options for this
    command (one options class serving two commands: `edu score` and `classify score`).

    Every argument's default is argparse.SUPPRESS: an option the user did not give is
    absent from the namespace, so `from_namespace` (and `given_fields`) can tell
    "given" from "defaulted". The help text states the default itself."""
    excluded = set(exclude)
    for spec in option_specs(cls):
        if not spec.declared.cli or spec.name in excluded:
            continue
        d = spec.declared
        kwargs: dict[str, Any] = {"help": _cli_help(spec, (helps or {}).get(spec.name)), "default": argparse.SUPPRESS}
        if d.choices and spec.kind not in LIST_KINDS and not d.positional:
            # (an omitted optional positional's SUPPRESS default would be checked against the
            # choices by argparse; positionals' choices are checked by from_namespace instead)
            kwargs["choices"] = d.choices
        if d.positional:
            kwargs["metavar"] = spec.metavar
            if spec.kind in LIST_KINDS:
                kwargs["nargs"] = d.nargs or ("+" if spec.required else "*")
            else:
                kwargs["nargs"] = d.nargs or (None if spec.required else "?")
                kwargs["type"] = _cli_type(spec)
            if kwargs["nargs"] is None:
                del kwargs["nargs"]
            parser.add_argument(spec.name, **kwargs)
            continue
        names = [spec.flag] + ([d.short] if d.short else [])
        kwargs["dest"] = spec.name
        if spec.required:
            kwargs["required"] = True
        if spec.kind == "bool":
            if spec.required or spec.field.default is None:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["action"] = "store_false" if spec.field.default is True else "store_true"
            parser.add_argument(*names, **kwargs)
            continue
        if d.metavar:
            kwargs["metavar"] = d.metavar
        if spec.kind == "inputs":
            # paths may hold commas: several values after the flag, and the flag may repeat
            kwargs["action"] = "extend"
            kwargs["nargs"] = d.nargs or "+"
        else:
            kwargs["type"] = _cli_type(spec)
            if d.nargs:
                kwargs["nargs"] = d.nargs
        parser.add_argument(*names, **kwargs)


def given_fields(cls: type, namespace: argparse.Namespace) -> set[str]:
    """The options of `cls` the user gave on the command line (parsed with `add_arguments`)."""
    return {spec.name for spec in option_specs(cls) if hasattr(namespace, spec.name)}


def from_namespace(cls: type, namespace: argparse.Namespace, **fixed: Any) -> Any:
    """Build and validate an instance from parsed arguments; `fixed` values win over the namespace.

    Relative paths resolve against the current directory. Raises OptionsError naming
    every problem by its flag."""
    names = {spec.name for spec in option_specs(cls)}
    unknown = set(fixed) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no option {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    problems: list[str] = []
    cwd = os.getcwd()
    for spec in option_specs(cls):
        label = spec.cli_label()
        if spec.name in fixed:
            raw = fixed[spec.name]
        elif spec.declared.cli and hasattr(namespace, spec.name):
            raw = getattr(namespace, spec.name)
        elif spec.required:
            problems.append(f"{label}: is required ({spec.help})")
            continue
        else:
            values[spec.name] = spec.default()
            continue
        values[spec.name], found = _convert(spec, raw, label=label, style="cli", base=cwd, check_paths=True)
        problems += found
    if problems:
        raise OptionsError(problems)
    instance = cls(**values)
    problems = _cross_check(instance, style="cli", prefix="")
    if problems:
        raise OptionsError(problems)
    return instance


def _cli_type(spec: OptionSpec) -> Any:
    if spec.kind == "str_list":
        return _comma_list
    if spec.kind not in ("int", "float"):
        return str
    convert = int if spec.kind == "int" else float

    def convert_number(text: str) -> Any:
        if text is argparse.SUPPRESS:
            # argparse converts an omitted optional positional's default; SUPPRESS must stay itself
            return text
        if spec.nullable and text.strip().lower() in ("none", "null"):
            return None
        return convert(text)

    convert_number.__name__ = convert.__name__  # argparse names the type in "invalid int value"
    return convert_number


def _comma_list(text: str) -> list[str]:
    """`en, de` -> ["en", "de"]; `all` stays ["all"] (the stage decides what it means)."""
    return [part.strip() for part in text.split(",") if part.strip()]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help of every command: descriptions kept as written, and "(default: X)" added to a hand-declared
    argument's help only when the help does not state its default already and there is one to state
    (argparse's ArgumentDefaultsHelpFormatter printed "(default DIR/x) (default: None)"). A description's
    paragraph that fits the terminal, or holds indented lines (examples), is kept as written; a wider
    one is re-wrapped."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap

        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if all(len(line) <= width for line in lines) or any(line[:1].isspace() for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(line.strip() for line in lines), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (states_default(text) or default is None or default is argparse.SUPPRESS or action.required
                or not action.option_strings or isinstance(default, bool)):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        shown = str(shown).replace("%", "%%")
        if not shown:  # an empty list or string (`--set`, repeatable): "(default: )" says nothing
            return text
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


# How a help text states its own default: "(default: X)", "(default X)", "; default X",
# "off by default", "the default", "default when ...". The bare word is not enough: "default
# packed sequence length" (`--seq-len`) names what the option is, not its default, and hid it.
_STATED_DEFAULT = re.compile(r"\(default\b|\bdefault:|;\s*default\b|\bby default\b|\bthe default\b|"
                             r"\bdefault\)|\bdefault when\b", re.IGNORECASE)


def states_default(text: str) -> bool:
    """Whether a help text already says what the option's default is (then none is appended)."""
    return bool(_STATED_DEFAULT.search(text or ""))


def _cli_help(spec: OptionSpec, text: str | None = None) -> str:
    text = text or spec.help
    if spec.declared.choices and (spec.kind in LIST_KINDS or spec.declared.positional):
        text += f" (any of: {', '.join(map(str, spec.declared.choices))})"
    if spec.kind == "str_list" and not spec.declared.positional:
        text += "; comma-separated"
    if spec.kind == "bool" and not spec.required and spec.field.default is True:
        text = spec.declared.off_help or f"turn off (on by default): {spec.help}"
    elif not spec.required and spec.kind != "bool" and not states_default(text):
        text += f" (default: {_cli_value(spec.default())})"
    return text.replace("%", "%%")


def _cli_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


# ---------------------------------------------------------------- config mappings


def from_mapping(cls: type, mapping: Mapping | None, *, prefix: str = "", base_dir: str | None = None,
                 touched: Iterable[str] = frozenset(), check_paths: bool = True,
                 fixed: Mapping[str, Any] | None = None) -> tuple[Any | None, list[str]]:
    """Build an instance from one config section; return (instance or None, problems).

    `prefix` is the section's dotted key (`dedup`), used in messages and to match
    `touched`: the dotted keys set with `--set`, whose relative paths resolve against
    the current directory instead of `base_dir` (the config's folder; default: cwd).
    Missing keys take their defaults. `fixed` values are supplied by the caller (a job
    config sets a stage's job directory and input folder itself); a section that sets
    one is told so. The instance is None when there are problems."""
    fixed = dict(fixed or {})
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    section = prefix[:-1]
    touched = set(touched)
    specs = option_specs(cls)
    yaml_names = [spec.name for spec in specs if spec.declared.yaml]
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        key = section or "config"
        return None, [f"{_with_origin(key, touched)}: must be a mapping of options "
                      f"({', '.join(yaml_names)}), got {_type_name(mapping)}"]
    problems: list[str] = []
    cli_only = {spec.name: spec for spec in specs if not spec.declared.yaml and spec.declared.cli}
    for key in mapping:
        full = f"{prefix}{key}"
        if key in fixed:
            problems.append(f"{_with_origin(full, touched)}: is set by the job itself, not a config key")
            continue
        if key in yaml_names:
            continue
        if key in cli_only:
            problems.append(f"{_with_origin(full, touched)}: is a command-line option only "
                            f"({cli_only[key].flag}), not a config key")
            continue
        guess = closest(key, yaml_names)
        hint = f"did you mean {prefix}{guess}?" if guess else f"known: {', '.join(yaml_names)}"
        problems.append(f"{_with_origin(full, touched)}: unknown key ({hint})")
    values: dict[str, Any] = {}
    cwd = os.getcwd()
    for spec in specs:
        full = f"{prefix}{spec.name}"
        label = _with_origin(full, touched)
        if spec.name in fixed:
            values[spec.name] = fixed[spec.name]
            continue
        if not spec.declared.yaml or spec.name not in mapping:
            if spec.required:
                problems.append(f"{label}: is required ({spec.help})")
            else:
                values[spec.name] = spec.default()
            continue
        raw = mapping[spec.name]
        if raw is None and not spec.nullable:
            problems.append(f"{label}: {'is required' if spec.required else 'must not be null'} ({spec.help})")
            continue
        base = cwd if _is_touched(full, touched) else (base_dir or cwd)
        values[spec.name], found = _convert(spec, raw, label=label, style="yaml", base=base,
                                            check_paths=check_paths, item_key=full,
                                            origin=" (from --set)" if _is_touched(full, touched) else "")
        problems += found
    if problems:
        return None, problems
    instance = cls(**values)
    problems = _cross_check(instance, style="yaml", prefix=prefix, touched=touched)
    return (None, problems) if problems else (instance, [])


def to_mapping(instance: Any) -> dict[str, Any]:
    """The config keys of `instance` as a plain dict (lists, not tuples) for yaml.safe_dump."""
    return {spec.name: _thaw(getattr(instance, spec.name))
            for spec in option_specs(type(instance)) if spec.declared.yaml}


def _thaw(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _is_touched(key: str, touched: set[str]) -> bool:
    """`--set crawl.lid_model=x` touches crawl.lid_model; `--set crawl={...}` touches all of crawl."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in touched for i in range(1, len(parts) + 1))


def _with_origin(key: str, touched: set[str]) -> str:
    return f"{key} (from --set)" if _is_touched(key, touched) else key


# ---------------------------------------------------------------- validation


def validate(instance: Any, *, style: str = "yaml", prefix: str = "") -> list[str]:
    """Types, ranges, choices and the class's own cross-field checks of a built instance.

    `style="cli"` names options by flag (`--threshold`), `"yaml"` by dotted key
    (`dedup.threshold`, with `prefix="dedup"`). Paths are neither resolved nor checked."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    problems: list[str] = []
    for spec in option_specs(type(instance)):
        label = spec.cli_label() if style == "cli" else f"{prefix}{spec.name}"
        value = getattr(instance, spec.name)
        if value is None and not spec.nullable:
            problems.append(f"{label}: must not be null ({spec.help})")
            continue
        problems += _convert(spec, value, label=label, style=style, base=None, check_paths=False)[1]
    return problems + _cross_check(instance, style=style, prefix=prefix)


def _cross_check(instance: Any, *, style: str, prefix: str, touched: set[str] = frozenset()) -> list[str]:
    check = getattr(instance, "check_options", None)
    if check is None:
        return []
    specs = {spec.name: spec for spec in option_specs(type(instance))}
    problems = []
    for name, message in check() or ():
        if name in specs and style == "cli":
            label = specs[name].cli_label()
        else:
            label = _with_origin(f"{prefix}{name}", set(touched))
        problems.append(f"{label}: {message}")
    return problems


def _convert(spec: OptionSpec, value: Any, *, label: str, style: str, base: str | None, check_paths: bool,
             item_key: str | None = None, origin: str = "") -> tuple[Any, list[str]]:
    """Check one value and normalise it (lists -> tuples, ints -> floats, paths resolved when
    `base` is given). Returns (value, problems); problems are complete lines. In the YAML
    style a list item is named `item_key[i]` followed by `origin` (" (from --set)")."""
    problems: list[str] = []
    d = spec.declared

    def problem(message: str, where: str = label) -> None:
        problems.append(f"{where}: {message}")

    if value is None:
        if not spec.nullable:
            problem(f"must not be null ({spec.help})")
        return None, problems
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            problem(f"must be true or false, got {_describe(value)}")
        return value, problems
    if kind in ("int", "float"):
        accepted = int if kind == "int" else (int, float)  # floats accept ints; ints never take floats
        if isinstance(value, bool) or not isinstance(value, accepted):
            problem(f"must be {'an integer' if kind == 'int' else 'a number'}, got {_describe(value)}")
            return value, problems
        if kind == "float":
            value = float(value)
            if math.isnan(value):
                problem("must be a number, got nan")
                return value, problems
        if d.minimum is not None and value < d.minimum:
            problem(f"must be >= {d.minimum:g}, got {value!r}")
        if d.maximum is not None and value > d.maximum:
            problem(f"must be <= {d.maximum:g}, got {value!r}")
        if d.choices and value not in d.choices:
            problem(f"must be one of {', '.join(map(str, d.choices))}, got {value!r}")
        return value, problems
    if kind in STRING_KINDS:
        message = _not_a_string(value)
        if message:
            problem(message)
            return value, problems
        if kind == "str":
            if d.choices and value not in d.choices:
                problem(_not_a_choice(value, d.choices))
            return value, problems
        if not value:
            problem("must be a path, got an empty string")
            return value, problems
        resolved = _resolve(value, base)
        if check_paths and _is_local(resolved):
            if kind == "path" and d.must_exist and not os.path.exists(resolved):
                problem(f"{value!r} does not exist (looked at {resolved})")
            if kind == "output" and os.path.exists(resolved) and not os.path.isdir(resolved):
                problem(f"{resolved} exists and is not a directory")
        return resolved, problems
    # list kinds
    if isinstance(value, str):
        value = _comma_list(value) if kind == "str_list" else [value]
    if not isinstance(value, (list, tuple)):
        what = "a path, URL or cc: snapshot, or a list of them" if kind == "inputs" else "a list of strings"
        problem(f"must be {what}, got {_describe(value)}")
        return value, problems
    if not value:
        problem("must not be empty")
        return tuple(value), problems
    items = []
    for i, item in enumerate(value):
        where = f"{item_key or label}[{i}]{origin}" if style == "yaml" else label
        message = _not_a_string(item)
        if message or not item.strip():
            problem(message or "must not be an empty string", where)
            items.append(item)
            continue
        if kind == "str_list":
            if d.choices and item not in d.choices:
                problem(_not_a_choice(item, d.choices), where)
            items.append(item)
            continue
        items.append(_check_input(item, base, check_paths, lambda m, where=where: problem(m, where)))
    return tuple(items), problems


def _check_input(item: str, base: str | None, check_paths: bool, problem: Any) -> str:
    if item.startswith("cc:"):
        if len(item) <= 3:
            problem("cc: needs a snapshot name, e.g. cc:CC-MAIN-2024-22")
        return item
    path = _resolve(item, base)
    if not check_paths or not _is_local(path):
        return path
    if GLOB_CHARS & set(path):
        # the crawl expands the pattern itself (recursively for **); here it only has to match
        if not any(os.path.isfile(p) for p in glob.iglob(path, recursive=True)):
            problem(f"{item!r} matches no file (looked at {path})")
    elif not os.path.exists(path):
        problem(f"{item!r} does not exist (looked at {path})")
    return path


def _resolve(value: str, base: str | None) -> str:
    """Relative local paths -> absolute against `base`; URLs unchanged; file:// stripped."""
    if value.startswith("file://"):
        value = value[len("file://"):]
    if "://" in value or base is None:
        return value
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _is_local(path: str) -> bool:
    return "://" not in path


def _not_a_string(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, bool):
        word = "no" if value is False else "yes"
        others = "off, false" if value is False else "on, true"
        return (f"got the boolean {value}; YAML 1.1 reads `{word}` as {str(value).lower()} -- "
                f"quote it: '{word}' (likewise {others})")
    if isinstance(value, (int, float)):
        return f"must be a string, got {_describe(value)} -- quote it: '{value}'"
    return f"must be a string, got {_describe(value)}"


def _not_a_choice(value: str, choices: tuple) -> str:
    guess = closest(value, choices)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return f"must be one of {', '.join(map(str, choices))}, got {value!r}{hint}"


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    return f"{_type_name(value)} {value!r}"


# ---------------------------------------------------------------- docs


def options_table(cls: type, prefix: str = "", *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                  helps: Mapping[str, str] | None = None, header: bool = True) -> str:
    """Markdown table of the options of `cls`: | YAML key | CLI flag | type | default | meaning |.

    `only`/`exclude` pick options (a job config's section leaves out what the job sets itself),
    `helps` words some options' meaning for the command the table documents, `header=False` gives
    rows to append to another table of the same section."""
    prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
    rows = ["| YAML key | CLI flag | type | default | meaning |", "|---|---|---|---|---|"] if header else []
    wanted = None if only is None else set(only)
    for spec in option_specs(cls):
        if spec.name in set(exclude) or (wanted is not None and spec.name not in wanted):
            continue
        d = spec.declared
        key = f"`{prefix}{spec.name}`" if d.yaml else "(command line only)"
        if not d.cli:
            flag = "(config only)"
        elif d.positional:
            flag = f"`{spec.metavar}{'...' if spec.kind in LIST_KINDS else ''}`"
        else:
            flag = f"`{spec.flag}`" + (f", `{d.short}`" if d.short else "")
            if spec.kind == "bool" and (spec.required or spec.field.default is None):
                flag += f", `--no-{spec.flag.removeprefix('--')}`"  # BooleanOptionalAction
        meaning = (helps or {}).get(spec.name) or d.help
        default = "required" if spec.required else _yaml_value(spec.default())
        if not d.yaml and spec.flag.startswith("--no-") and d.off_help:
            # a command-line-only `--no-X` row describes the flag as typed: what giving it does, off unless given
            meaning, default = d.off_help, "`false`"
        cells = [key, flag, _type_cell(spec), default, meaning]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def _type_cell(spec: OptionSpec) -> str:
    d = spec.declared
    text = spec.kind
    if d.minimum is not None and d.maximum is not None:
        text += f" in [{d.minimum:g}, {d.maximum:g}]"
    elif d.minimum is not None:
        text += f" >= {d.minimum:g}"
    elif d.maximum is not None:
        text += f" <= {d.maximum:g}"
    if d.choices:
        text += ": " + ", ".join(f"`{c}`" for c in d.choices)
    if spec.kind == "path" and d.must_exist:
        text += " (must exist)"
    if spec.nullable:
        text += " or null"
    return text


def _yaml_value(value: Any) -> str:
    import yaml

    if value is None:
        return "`null`"
    text = yaml.safe_dump(_thaw(value), default_flow_style=True).strip()
    return f"`{text.removesuffix('...').strip()}`"
