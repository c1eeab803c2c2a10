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
import difflib
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from shammie.pipeline.errors import UserError

STAGES = ("crawl", "dedup", "edu", "shard")
GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Option:
    kind: str  # str | int | float | bool | str_list | inputs | path | output
    default: Any = None
    help: str = ""
    required: bool = False
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    must_exist: bool = False  # for kind "path": a local path must exist


TOP_LEVEL: dict[str, Option] = {
    "name": Option("str", None, "job name (default: the config file's name)"),
    "input": Option("inputs", None, "WARC inputs: local files, folders or globs, s3:// URLs, or cc:CC-MAIN-YYYY-WW snapshots"),
    "output": Option("output", None, "job directory (local or s3://); every stage writes one folder in it", required=True, nullable=False),
    "ray_address": Option("str", None, "Ray cluster address; null = RAY_ADDRESS, else an embedded local Ray"),
    "workers": Option("int", None, "CPUs for the embedded Ray / parallel tasks (null = all)", minimum=1),
}

STAGE_OPTIONS: dict[str, dict[str, Option]] = {
    "crawl": {
        "enabled": Option("bool", True, "run this stage", nullable=False),
        "languages": Option("str_list", ["en"], "ISO 639-1 languages to keep"),
        "language_threshold": Option("float", 0.65, "minimum fastText language score", minimum=0, maximum=1),
        "lid_model": Option("path", None, "fastText language-id model file (null = the bundled one)", must_exist=True),
        "limit_files": Option("int", None, "process only the first N input WARC files", minimum=1),
        "keep_removed": Option("bool", False, "also write the documents each filter removed (for inspection)", nullable=False),
    },
    "dedup": {
        "enabled": Option("bool", True, "run this stage", nullable=False),
        "across_snapshots": Option("bool", False, "deduplicate across CC snapshots too (FineWeb: per snapshot)", nullable=False),
    },
    "edu": {
        "enabled": Option("bool", False, "run this stage", nullable=False),
        "model": Option("path", None, "edu scorer model (trained with `shammie edu train`)", must_exist=True),
        "backend": Option("str", "fasttext", "kind of model", nullable=False, choices=("fasttext", "transformers")),
        "threshold": Option("float", 3, "keep documents with edu_int_score >= threshold (writes edu-<threshold>/)",
                            nullable=False, minimum=0, maximum=5),
    },
    "shard": {
        "enabled": Option("bool", True, "run this stage", nullable=False),
        "store": Option("output", None, "shard store folder, local or s3:// (null = <output>/store)"),
        "group_by": Option("str", "edu", "domain key: edu (edu_int_score), site, language, or any column", nullable=False),
        "tokenizer": Option("path", None, "existing sentencepiece .model to tokenize with", must_exist=True),
        "train_tokenizer": Option("int", None, "train a sentencepiece tokenizer with this vocabulary size on the data "
                                  "(null and no tokenizer: reuse the store's, else train 32000)", minimum=300),
        "tokenizer_type": Option("str", "bpe", "type of the trained tokenizer", nullable=False, choices=("bpe", "unigram")),
        "seq_len": Option("int", 2048, "tokens per training sequence (recorded in the manifest)", nullable=False, minimum=1),
        "top_k": Option("int", None, "keep the K largest domains, pool the rest into `other` (null = stage default)", minimum=1),
    },
}

EDU_MODEL_HINT = (
    "train one from 0-5 grades: `shammie edu annotate JOB ...` (an LLM grades a sample), then "
    "`shammie edu train JOB/annotations.parquet --output edu.bin` (see `shammie edu --help`); "
    "then set edu.model (or pass --set edu.model=PATH)"
)


@dataclass
class JobConfig:
    """A validated config: absolute paths, every option present."""

    path: str | None
    values: dict[str, Any]
    overrides: list[str] = field(default_factory=list)

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
    return data


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
    validator = _Validator(base=base, cwd=os.getcwd(), touched=touched, check_paths=check_paths,
                           prepare_example=prepare_example)
    values = validator.validate(data, default_name=Path(path).stem if path else "job")
    if validator.errors:
        lines = "\n".join(f"  - {e}" for e in validator.errors)
        raise UserError(f"invalid config {path or ''}:\n{lines}".replace("config :", "config:"))
    return JobConfig(path=str(Path(path).resolve()) if path else None, values=values, overrides=overrides)


# ---------------------------------------------------------------- validation


class _Validator:
    def __init__(self, *, base: str, cwd: str, touched: set[str], check_paths: bool, prepare_example: bool):
        self.base = base
        self.cwd = cwd
        self.touched = touched
        self.check_paths = check_paths
        self.prepare_example = prepare_example
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        origin = " (from --set)" if key in self.touched else ""
        self.errors.append(f"{key}{origin}: {message}")

    def validate(self, data: dict[str, Any], default_name: str) -> dict[str, Any]:
        known = list(TOP_LEVEL) + list(STAGES)
        self._unknown_keys(data, known, prefix="")
        values: dict[str, Any] = {}
        for key, opt in TOP_LEVEL.items():
            values[key] = self._value(key, data.get(key, opt.default), opt, present=key in data)
        values["name"] = values["name"] or default_name
        for stage in STAGES:
            section = data.get(stage, {})
            if section is None:
                section = {}
            if not isinstance(section, dict):
                self.error(stage, f"must be a mapping of options ({', '.join(STAGE_OPTIONS[stage])}), got {_type_name(section)}")
                section = {}
            self._unknown_keys(section, list(STAGE_OPTIONS[stage]), prefix=f"{stage}.")
            values[stage] = {
                key: self._value(f"{stage}.{key}", section.get(key, opt.default), opt, present=key in section)
                for key, opt in STAGE_OPTIONS[stage].items()
            }
        self._cross_checks(values)
        return values

    def _unknown_keys(self, data: dict[str, Any], known: list[str], prefix: str) -> None:
        for key in data:
            if key not in known:
                guess = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {prefix}{guess[0]}?)" if guess else f" (known: {', '.join(known)})"
                self.error(f"{prefix}{key}", f"unknown key{hint}")

    def _value(self, key: str, value: Any, opt: Option, present: bool) -> Any:
        if value is None:
            if opt.required:
                self.error(key, f"is required ({opt.help})")
            elif present and not opt.nullable:
                self.error(key, f"must not be null ({opt.help})")
            return None if opt.nullable else opt.default
        checker: Callable[[str, Any, Option], Any] = getattr(self, f"_check_{opt.kind}")
        return checker(key, value, opt)

    def _bounds(self, key: str, value: float, opt: Option) -> None:
        if opt.minimum is not None and value < opt.minimum:
            self.error(key, f"must be >= {opt.minimum:g}, got {value!r}")
        if opt.maximum is not None and value > opt.maximum:
            self.error(key, f"must be <= {opt.maximum:g}, got {value!r}")

    def _check_any(self, key: str, value: Any, opt: Option) -> Any:
        return value

    def _check_str(self, key: str, value: Any, opt: Option) -> Any:
        if not isinstance(value, str):
            self.error(key, f"must be a string, got {_type_name(value)} {value!r}")
        elif opt.choices and value not in opt.choices:
            self.error(key, f"must be one of {', '.join(opt.choices)}, got {value!r}")
        return value

    def _check_int(self, key: str, value: Any, opt: Option) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be an integer, got {_type_name(value)} {value!r}")
            return value
        self._bounds(key, value, opt)
        return value

    def _check_float(self, key: str, value: Any, opt: Option) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(key, f"must be a number, got {_type_name(value)} {value!r}")
            return value
        self._bounds(key, value, opt)
        return value

    def _check_bool(self, key: str, value: Any, opt: Option) -> Any:
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {_type_name(value)} {value!r}")
        return value

    def _check_str_list(self, key: str, value: Any, opt: Option) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.error(key, f"must be a list of strings, got {value!r}")
        elif not value:
            self.error(key, "must not be empty")
        return value

    def _base_for(self, key: str) -> str:
        return self.cwd if key in self.touched else self.base

    def _resolve(self, key: str, value: str) -> str:
        if value.startswith("file://"):
            value = value[len("file://"):]
        if "://" in value:
            return value
        value = os.path.expanduser(value)
        return os.path.normpath(os.path.join(self._base_for(key), value))

    def _check_path(self, key: str, value: Any, opt: Option) -> Any:
        if not isinstance(value, str) or not value:
            self.error(key, f"must be a path string, got {_type_name(value)} {value!r}")
            return value
        resolved = self._resolve(key, value)
        if self.check_paths and opt.must_exist and "://" not in resolved and not os.path.exists(resolved):
            hint = f"; {EDU_MODEL_HINT}" if key == "edu.model" else ""
            self.error(key, f"{value!r} does not exist (looked at {resolved}){hint}")
        return resolved

    def _check_output(self, key: str, value: Any, opt: Option) -> Any:
        if not isinstance(value, str) or not value:
            self.error(key, f"must be a path string, got {_type_name(value)} {value!r}")
            return value
        resolved = self._resolve(key, value)
        if self.check_paths and "://" not in resolved and os.path.exists(resolved) and not os.path.isdir(resolved):
            self.error(key, f"{resolved} exists and is not a directory")
        return resolved

    def _check_inputs(self, key: str, value: Any, opt: Option) -> Any:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            self.error(key, f"must be a path, URL or cc: snapshot, or a non-empty list of them, got {value!r}")
            return value
        resolved: list[str] = []
        for i, item in enumerate(value):
            item_key = f"{key}[{i}]"
            if not isinstance(item, str) or not item.strip():
                self.error(item_key, f"must be a string, got {_type_name(item)} {item!r}")
                continue
            if item.startswith("cc:"):
                if len(item) <= 3:
                    self.error(item_key, "cc: needs a snapshot name, e.g. cc:CC-MAIN-2024-22")
                resolved.append(item)
                continue
            path = self._resolve(key, item)
            if "://" in path or not self.check_paths:
                resolved.append(path)
            elif GLOB_CHARS & set(path):
                # the crawl stage expands the pattern itself (recursively for **)
                if not any(os.path.isfile(p) for p in glob.iglob(path, recursive=True)):
                    self.error(item_key, f"{item!r} matches no file (looked at {path})")
                resolved.append(path)
            elif not os.path.exists(path):
                if is_example_input(path) and (not self.prepare_example or prepare_example_input(path)):
                    resolved.append(path)
                else:
                    self.error(item_key, f"{item!r} does not exist (looked at {path})")
            else:
                resolved.append(path)
        return resolved

    def _cross_checks(self, values: dict[str, Any]) -> None:
        if values["crawl"]["enabled"] and values["input"] is None:
            self.error("input", "is required when crawl is enabled (WARC files, folders, globs, s3:// or cc: snapshots)")
        edu = values["edu"]
        if edu["enabled"] and not edu["model"]:
            self.error("edu.model", f"is required when edu is enabled; {EDU_MODEL_HINT}")
        shard = values["shard"]
        if shard["enabled"] and shard["tokenizer"] and shard["train_tokenizer"]:
            self.error("shard.train_tokenizer", "set either shard.tokenizer or shard.train_tokenizer, not both")
        if (shard["enabled"] and shard["group_by"] == "edu" and not edu["enabled"] and values["crawl"]["enabled"]):
            self.error("shard.group_by", "'edu' needs edu scores but edu is disabled; enable edu (with edu.model) "
                       "or group by site or language")
        if not any(values[s]["enabled"] for s in STAGES):
            self.error("stages", "every stage is disabled; nothing to run")


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
    """Markdown table of every key (used to keep docs/jobs.md honest)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, opt in TOP_LEVEL.items():
        rows.append(f"| `{key}` | {opt.kind} | {_fmt(opt.default)} | {opt.help} |")
    for stage, opts in STAGE_OPTIONS.items():
        for key, opt in opts.items():
            rows.append(f"| `{stage}.{key}` | {opt.kind} | {_fmt(opt.default)} | {opt.help} |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    return "null" if value is None else f"`{yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}`"
