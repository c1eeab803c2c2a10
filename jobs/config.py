"""Job configs: one YAML file names the input, the stages with their options and the output.

The whole file is checked before any work starts: unknown keys, wrong types and
missing local paths are reported together, each naming its key, as one
`UserError` (exit code 2). `--set key=value` overrides are applied first, so
they are checked the same way.

Relative paths in the file resolve against the file's own folder (a config
travels with the data it names); relative paths given with `--set` resolve
against the current directory (where the user typed them).

Why a small hand-written schema instead of pydantic/jsonschema: neither is a
dependency, the schema is ~25 options, and the error text (key path, "did you
mean", how to get an edu model) is the part that matters to users.
"""

from __future__ import annotations

import codecs
import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shammie.pipeline import registry
from shammie.pipeline.errors import UserError
from shammie.pipeline.options import closest, from_mapping, option, option_specs, options_table, to_mapping


def stage_names() -> list[str]:
    """The stage sections of a job config, in the order of a job's steps (the stage registry's)."""
    return [c.name for c in registry.job_commands()]


@dataclass(frozen=True)
class JobOptions:
    """The top level of a job config (besides the run options `workers` and `ray_address`)."""

    output: str = option(help="job directory (local or s3://); every stage writes one folder in it", kind="output",
                         cli=False)
    name: str | None = option(None, help="job name (default: the config file's name)", cli=False)
    input: tuple[str, ...] | None = option(None, help="WARC inputs: local files, folders or globs, s3:// URLs, or "
                                           "cc:CC-MAIN-YYYY-WW snapshots (the crawl's INPUT arguments)",
                                           kind="inputs", cli=False)


@dataclass(frozen=True)
class Section:
    """One stage section of a config: the options dataclass(es) its keys belong to, and the fields the
    job sets itself (the job directory, the folder read: the chain of stages decides)."""

    parts: tuple[tuple[type, dict, tuple[str, ...] | None], ...]  # (options class, fixed fields, keys or None=rest)
    enabled: bool
    help: str
    helps: tuple[tuple[str, str], ...] = ()  # option -> its meaning in this section (docs/options.md)
    steps: tuple[registry.Step, ...] = ()  # the registry step of each part, in the order of `parts`

    def classes(self) -> list[type]:
        return [cls for cls, _, _ in self.parts]


def sections() -> dict[str, Section]:
    """The config sections, generated from the stage registry: one per job stage, one part per step.
    A step with its own keys (edu's subset: `threshold`) claims them before the step that takes the
    rest. Each stage module is imported only when a config is read."""
    found = {}
    for command in registry.job_commands():
        steps = sorted(command.steps, key=lambda step: step.keys is None)
        helps: dict[str, str] = {}
        for step in steps:
            helps.update(registry.load(step.helps) if step.helps else {})
        found[command.name] = Section(
            tuple((step.stage_class().Options, dict(step.fixed), step.keys) for step in steps), command.enabled,
            command.config_help, tuple(helps.items()), tuple(steps))
    return found


EDU_MODEL_HINT = (
    "train one from 0-5 grades: `shammie edu annotate JOB ...` (an LLM grades a sample), then "
    "`shammie edu train JOB/annotations.parquet --output edu.bin` (see `shammie edu --help`); "
    "then set edu.model (or pass --set edu.model=PATH)"
)


@dataclass
class JobConfig:
    """A validated config: absolute paths, every option present.

    `values` is the plain mapping (written back as `job.yaml`); `options[stage]` holds
    the validated options dataclass(es) of each section, `run` the run options."""

    path: str | None
    values: dict[str, Any]
    overrides: list[str] = field(default_factory=list)
    options: dict[str, list[Any]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def output(self) -> str:
        return self.values["output"]

    def stage(self, name: str) -> dict[str, Any]:
        return self.values[name]

    def enabled(self, name: str) -> bool:
        return bool(self.values[name]["enabled"])

    @property
    def store(self) -> str:
        from shammie.pipeline import storage

        return self.values["shard"]["store"] or storage.join(self.output, "store")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.values, sort_keys=False)


# ---------------------------------------------------------------- loading


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice (PyYAML would silently keep the last value)."""

    def __init__(self, key_path: str, first_line: int, second_line: int, mark: yaml.Mark):
        super().__init__(None, None, f"duplicate key {key_path}", mark)
        self.key_path = key_path
        self.first_line = first_line
        self.second_line = second_line


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys at any level, naming the key's dotted path.

    Keys merged in with `<<: *anchor` may be overridden (that is what merge keys are
    for); only keys written twice in one mapping are errors."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._key_paths: dict[int, str] = {}  # id(node) -> dotted path, filled parent before child

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        path = self._key_paths.get(id(node), "")
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # SafeConstructor reports unhashable keys itself
            key_path = f"{path}.{key}" if path else str(key)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise DuplicateKeyError(key_path, first_line[key], line, key_node.start_mark)
            first_line[key] = line
            self._key_paths.setdefault(id(value_node), key_path)
        return super().construct_mapping(node, deep=deep)

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> list[Any]:
        path = self._key_paths.get(id(node), "")
        for i, item in enumerate(node.value):
            self._key_paths.setdefault(id(item), f"{path}[{i}]")
        return super().construct_sequence(node, deep=deep)


def read_yaml(path: str) -> dict[str, Any]:
    """Read a config file into a dict; every way it can be unreadable is one-line UserError."""
    if not os.path.exists(path):
        raise UserError(f"config {path} does not exist")
    if os.path.isdir(path):
        raise UserError(f"config {path} is a folder; give the YAML file in it (e.g. {os.path.join(path, 'job.yaml')})")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"config {path} cannot be read: {e.strerror or e}") from None
    text = _decode_config(path, raw)
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except DuplicateKeyError as e:
        lines = (f"twice on line {e.first_line}" if e.first_line == e.second_line
                 else f"on lines {e.first_line} and {e.second_line}")
        raise UserError(f"config {path}: duplicate key {e.key_path} {lines} "
                        "(YAML would silently keep only the last; remove one)") from None
    except yaml.YAMLError as e:
        raise UserError(f"config {path} is not valid YAML: {_one_line_yaml_error(e)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"config {path}: the top level must be a mapping of keys (name, input, output, crawl, ...), "
                        f"got {_type_name(data)}")
    problems: list[str] = []
    data = expand_environment(data, problems)
    if problems:
        raise UserError(f"config {path}: " + "; ".join(problems))
    return data


# `${NAME}` or `${NAME:-default}`; `$${...}` is a literal `${...}` (as in Docker Compose files)
_ENV_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def expand_environment(value: Any, problems: list[str], key: str = "") -> Any:
    """Replace `${NAME}` (and `${NAME:-default}`) in every string of a config by the environment
    variable's value, so a config can name a bucket or a secret path without holding it. An unset
    variable without a default is a problem naming the key and the variable, never an empty or
    literal value."""
    if isinstance(value, dict):
        return {k: expand_environment(v, problems, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_environment(v, problems, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match) -> str:
        escaped, body = match.group(1), match.group(2)
        if escaped:
            return "${" + body + "}"
        name, has_default, default = body.partition(":-")
        if not _ENV_NAME.match(name):
            problems.append(f"{key}: ${{{body}}} is not a variable reference (write ${{NAME}} or ${{NAME:-default}}; "
                            "$${...} for a literal)")
            return match.group(0)
        if name in os.environ:
            return os.environ[name]
        if has_default:
            return default
        problems.append(f"{key}: the environment variable {name} is not set (export it, or write "
                        f"${{{name}:-default}})")
        return match.group(0)

    return _ENV_REFERENCE.sub(substitute, value)


def _decode_config(path: str, raw: bytes) -> str:
    """UTF-8, with or without a byte-order mark; UTF-16/32 with a BOM (what Windows editors and
    PowerShell's `>` write) decoded too, since YAML allows them; anything else is a UserError."""
    boms = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
            (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]  # UTF-32 LE starts like UTF-16 LE
    encoding = next((name for bom, name in boms if raw.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in raw[:200]:
        # NUL is valid UTF-8 but never in a YAML text: every other byte zero is UTF-16 text
        raise UserError(f"config {path} looks like UTF-16 without a byte-order mark; save it as UTF-8")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        if encoding != "utf-8":
            raise UserError(f"config {path} starts with a {encoding.upper()} byte-order mark but is not valid "
                            f"{encoding.upper()}; save it as UTF-8") from None
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"config {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); "
                        "save it as UTF-8") from None


def _one_line_yaml_error(error: yaml.YAMLError) -> str:
    """`line 3, column 7: mapping values are not allowed here` instead of PyYAML's multi-line report."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return " ".join(str(error).split())
    mark = error.problem_mark or error.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = error.problem or error.context or "invalid syntax"
    context = ""
    if error.context and error.problem and error.context_mark and mark is not error.context_mark:
        context = f" ({error.context} on line {error.context_mark.line + 1})"
    return " ".join(f"{where}{problem}{context}".split())


def parse_override(text: str) -> tuple[list[str], Any]:
    """`crawl.languages=[en, de]` -> (["crawl", "languages"], ["en", "de"]); values are YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set crawl.limit_files=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {text!r}: value is not valid YAML: {e}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> tuple[dict[str, Any], set[str]]:
    """Return a copy of `data` with overrides applied, and the dotted keys they set."""
    data = copy.deepcopy(data)
    touched: set[str] = set()
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {text!r}: {'.'.join(parts[:i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
        touched.add(".".join(parts))
    return data, touched


def load_config(path: str | None, overrides: list[str] | None = None, *,
                data: dict[str, Any] | None = None, check_paths: bool = True,
                prepare_example: bool = True) -> JobConfig:
    """Read, override and validate a config; raise UserError listing every problem.

    `prepare_example=False` (dry runs) accepts the shipped example's missing input
    folder without generating it."""
    overrides = list(overrides or [])
    if data is None:
        if path is None:
            raise UserError("no config given")
        data = read_yaml(path)
    base = str(Path(path).resolve().parent) if path else os.getcwd()
    data, touched = apply_overrides(data, overrides)
    validator = _Validator(base=base, touched=touched, check_paths=check_paths, prepare_example=prepare_example)
    values = validator.validate(data, default_name=Path(path).stem if path else "job")
    if validator.errors:
        lines = "\n".join(f"  - {e}" for e in validator.errors)
        raise UserError(f"invalid config {path or ''}:\n{lines}".replace("config :", "config:"))
    return JobConfig(path=str(Path(path).resolve()) if path else None, values=values, overrides=overrides,
                     options=validator.options)


# ---------------------------------------------------------------- validation


class _Validator:
    """Every section is read with its stage's own options dataclass (`pipeline/options.py`), so a
    key means the same as the command-line flag of that name; then cross-section checks."""

    def __init__(self, *, base: str, touched: set[str], check_paths: bool, prepare_example: bool):
        self.base, self.touched, self.check_paths, self.prepare_example = base, touched, check_paths, prepare_example
        self.errors: list[str] = []
        self.options: dict[str, list[Any]] = {}

    def validate(self, data: dict[str, Any], default_name: str) -> dict[str, Any]:
        from shammie.pipeline.runner import RunOptions

        known_sections = sections()
        top_keys = {spec.name for spec in option_specs(JobOptions)}
        run_keys = {spec.name for spec in option_specs(RunOptions) if spec.declared.yaml}
        known = sorted(top_keys | run_keys) + stage_names()
        for key in data:
            if key not in known:
                guess = closest(key, known)
                self.errors.append(f"{key}: unknown key" + (f" (did you mean {guess}?)" if guess
                                                             else f" (known: {', '.join(known)})"))
        values: dict[str, Any] = {}
        top = {k: data[k] for k in top_keys if k in data}
        check_inputs = self.check_paths and not self._example_only(top.get("input"))
        job, problems = from_mapping(JobOptions, top, base_dir=self.base, touched=self.touched,
                                     check_paths=check_inputs)
        self.errors += problems
        run, problems = from_mapping(RunOptions, {k: data[k] for k in run_keys if k in data}, base_dir=self.base,
                                     touched=self.touched, check_paths=self.check_paths)
        self.errors += problems
        if job is not None:
            values.update(to_mapping(job))
            values["name"] = values["name"] or default_name
        if run is not None:
            values.update({k: v for k, v in to_mapping(run).items() if k in run_keys})
        for name, section in known_sections.items():
            values[name] = self._section(name, section, data.get(name))
        self._cross_checks(values)
        return values

    def _example_only(self, inputs: Any) -> bool:
        """The shipped example's input folder is generated on first use instead of refused as missing."""
        items = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(items, list) or not items:
            return False
        resolved = [os.path.normpath(os.path.join(self.base, i)) for i in items if isinstance(i, str)]
        if not any(is_example_input(p) for p in resolved):
            return False
        for p in resolved:
            if is_example_input(p) and not os.path.exists(p) and self.prepare_example:
                prepare_example_input(p)
        return not self.prepare_example

    def _section(self, name: str, section: Section, raw: Any) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.errors.append(f"{name}: must be a mapping of options, got {_type_name(raw)}")
            return {"enabled": section.enabled}
        raw = dict(raw)
        enabled = raw.pop("enabled", section.enabled)
        if not isinstance(enabled, bool):
            self.errors.append(f"{name}.enabled: must be true or false, got {_type_name(enabled)} {enabled!r}")
            enabled = section.enabled
        values: dict[str, Any] = {"enabled": enabled}
        instances = []
        claimed: set[str] = set()
        for cls, fixed, keys in section.parts:
            part = {k: v for k, v in raw.items() if (k in keys if keys is not None else k not in claimed)}
            if keys is not None:
                claimed |= set(keys)
            instance, problems = from_mapping(cls, part, prefix=name, base_dir=self.base, touched=self.touched,
                                              check_paths=self.check_paths and enabled, fixed=fixed)
            if not enabled:
                # A disabled stage's required options may be missing; its other mistakes still count.
                problems = [p for p in problems if "is required" not in p]
            self.errors += problems
            if instance is not None:
                instances.append(instance)
                values.update({k: v for k, v in to_mapping(instance).items() if k not in fixed})
        if len(instances) == len(section.parts):
            self.options[name] = instances
        return values

    def _cross_checks(self, values: dict[str, Any]) -> None:
        if values["crawl"]["enabled"] and not values.get("input") and not any(e.startswith("input") for e in self.errors):
            self.errors.append("input: is required when crawl is enabled (WARC files, folders, globs, s3:// or "
                               "cc: snapshots)")
        if values["edu"]["enabled"] and not values["edu"].get("model"):
            # One message per mistake: this one replaces the section's own "edu.model: is required (...)".
            self.errors = [e for e in self.errors if not e.startswith("edu.model: is required (")]
            said = [i for i, e in enumerate(self.errors) if e.startswith("edu.model:")]
            if said:  # e.g. "'../models/edu.bin' does not exist": that message gets the hint
                self.errors[said[0]] += f"; {EDU_MODEL_HINT}"
            else:
                self.errors.append(f"edu.model: is required when edu is enabled; {EDU_MODEL_HINT}")
        if not any(values[s]["enabled"] for s in stage_names()):
            self.errors.append("stages: every stage is disabled; nothing to run")
        shard = values["shard"]
        if shard["enabled"] and shard.get("group_by"):
            columns = self._planned_columns(values)
            if columns is not None:
                from shammie.mixing import domains as dom

                try:
                    dom.check_group_by(shard["group_by"], columns)
                except ValueError as e:
                    if shard["group_by"] == "edu":
                        self.errors.append("shard.group_by: 'edu' needs edu scores but edu is disabled; enable edu "
                                           "(with edu.model) or group by site or language")
                    else:
                        self.errors.append(f"shard.group_by: {str(e).replace('--group-by ', '')} (the columns the "
                                           f"enabled stages write: {', '.join(columns)})")

    def _planned_columns(self, values: dict[str, Any]) -> list[str] | None:
        """The columns the store's input will have once the planned stages ran (None: unknown)."""
        from shammie.filters.scoring import EDU_COLUMN, EDU_INT_COLUMN, QUALITY_COLUMN
        from shammie.pipeline.documents import DOCUMENT_SCHEMA

        if not values["crawl"]["enabled"]:
            return None  # an existing job: its folders' schema decides at run time
        columns = list(DOCUMENT_SCHEMA.names)
        if values["classify"]["enabled"]:
            columns.append(values["classify"].get("column") or QUALITY_COLUMN)
        if values["edu"]["enabled"]:
            columns += [EDU_COLUMN, EDU_INT_COLUMN]
        return columns


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- the offline example

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_WARCS = REPO_ROOT / "examples" / "warc"
EXAMPLE_SCRIPT = REPO_ROOT / "examples" / "make_example_warcs.py"


def is_example_input(path: str) -> bool:
    return Path(path).resolve() == EXAMPLE_WARCS.resolve() and EXAMPLE_SCRIPT.exists()


def prepare_example_input(path: str) -> bool:
    """The shipped example reads examples/warc/, which a fresh clone does not have:
    generate it (a few synthetic English pages, no network) instead of failing."""
    import runpy

    module = runpy.run_path(str(EXAMPLE_SCRIPT))
    module["write_example_warcs"](str(EXAMPLE_WARCS))
    print(f"shammie run: generated the example input in {EXAMPLE_WARCS}")
    return True


def describe_options() -> str:
    """Markdown tables of every config key, generated from the options dataclasses (docs/options.md)."""
    from shammie.pipeline.runner import RunOptions

    parts = ["### Top level", "", options_table(JobOptions), options_table(RunOptions, header=False)]
    for name, section in sections().items():
        parts += ["", f"### `{name}` ({section.help})", "",
                  f"`{name}.enabled` (bool, default `{str(section.enabled).lower()}`): run this stage.", ""]
        # One table per section: the keys of each part, without what the job sets itself (the job
        # directory, the folder read, a scorer's kind) or an earlier part claimed
        claimed: set[str] = set()
        for i, (cls, fixed, keys) in enumerate(section.parts):
            parts.append(options_table(cls, name, only=keys, exclude=set(fixed) | claimed, helps=dict(section.helps),
                                       header=i == 0))
            claimed |= set(keys or ())
    return "\n".join(parts) + "\n"


OPTIONS_DOC_HEADER = """\
# Options of every stage and of job configs

Generated from the options dataclasses (`shammie.pipeline.options`) by
`shammie.jobs.config.options_doc()`; regenerate with
`.venv/bin/python -c "from shammie.jobs.config import options_doc; print(options_doc(), end='')" > docs/options.md`
(`tests/test_docs_options.py` fails when this file is out of date). Each YAML key is the
flag of the same name on the stage's command; "(command line only)" options change how
a run goes, not what it writes; "(config only)" keys are the job's own.

"""


def options_doc() -> str:
    return OPTIONS_DOC_HEADER + describe_options()
