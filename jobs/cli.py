"""The `shammie` command.

Each subcommand lives next to the code it drives and is imported only when it is
used, so `shammie --help` stays fast and a missing optional dependency of one
stage (torch, transformers) never breaks another. A subcommand module exposes
`add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shammie.pipeline import registry
from shammie.pipeline.errors import ShammieError, UserError
from shammie.pipeline.options import HelpFormatter, closest

__version__ = "0.1.0"


def subcommands() -> dict[str, tuple[str, str]]:
    """name -> (module, one-line help), from the stage registry (`pipeline/registry.py`)."""
    return {c.name: (c.cli, c.help) for c in registry.COMMANDS}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse's parser whose mistakes are one line, as the README promises for every user mistake:
    argparse printed the whole usage block (8-10 lines for a stage) before its one-line error. The
    subcommands' parsers are of the same class (argparse makes them with the parent's)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="shammie",
        description="Shammie: Common Crawl to training-ready shards, on Ray. "
        "Each stage reads one folder of a job directory and writes its own: "
        "documents/ -> deduped/ -> scored/ -> subsets (edu-3/) -> store/.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `shammie COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"shammie {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in subcommands().items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        module = importlib.import_module(module_name)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    commands = subcommands()
    only = command if command in commands else "__none__"
    parser = build_parser(only=only)
    if command is not None and command not in commands:
        guess = closest(command, commands)
        parser.error(f"unknown command {command!r}" + (f" (did you mean {guess}?)" if guess else
                                                         f"; commands: {', '.join(commands)}"))
    innermost = _command_parser(parser, argv)
    unknown = _unknown_flags(innermost, argv)
    if unknown:  # before argparse, whose "argument is required" would hide the typo that caused it
        innermost.error(unrecognized_message(innermost, unknown))
    args, extras = parser.parse_known_args(argv)
    if extras:
        innermost.error(unrecognized_message(innermost, extras))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except ShammieError as e:  # library errors written for the user (options, inputs, stores, mixers)
        message = " ".join(str(e).split("\n")) if not isinstance(e, UserError) else str(e)
        # named as typed (`shammie edu subset`), as argparse names its own errors for that command
        print(f"{innermost.prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{innermost.prog}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the command typed (`shammie edu score ...` -> the `score` parser)."""
    current = parser
    for token in argv:
        sub = next((a for a in current._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            break
        if token in sub.choices:
            current = sub.choices[token]
    return current


def _unknown_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The `--flags` of `argv` the command does not have (nor abbreviates, as argparse allows)."""
    known = [flag for action in parser._actions for flag in action.option_strings]
    unknown = []
    for token in argv:
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in known and not any(k.startswith(flag) for k in known):
            unknown.append(token)
    return unknown


def unrecognized_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """argparse's "unrecognized arguments", with the flag each mistyped one most likely meant."""
    known = [flag for action in parser._actions for flag in action.option_strings]
    named = []
    for extra in extras:
        flag = extra.split("=", 1)[0]
        guess = closest(flag, known) if flag.startswith("-") else None
        named.append(f"{extra} (did you mean {guess}?)" if guess else extra)
    return f"unrecognized arguments: {' '.join(named)}"


def entry() -> None:
    """The `shammie` executable: `main()`, then an exit that skips the interpreter's teardown.

    Why: once the command has finished, Python's own teardown (freeing the ~1,500 modules a
    stage imports, Ray's among them) took 0.4 s of a small crawl's wall time and does nothing
    for the user. Everything that must happen still does, in order: running non-daemon
    threads are joined, the exit hooks run (Ray's shutdown, logging's flush), and standard
    output and error are flushed; only then does the process end. Tests call `main()`."""
    code = main()
    finish_now(code)


def finish_now(code: int) -> None:
    import atexit
    import os
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`shammie ... | head`): nothing more to write
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
