"""Exceptions whose message is meant for the person running Shammie.

Library code raises the specific classes below (plain `ValueError`/`RuntimeError`
subclasses, usable from Python without the CLI); only `shammie.jobs.cli` turns
them into a one-line message and exit code 2. `UserError` is for CLI-facing code
(argument parsing, job configs).
"""

import errno


class ShammieError(Exception):
    """Base of every error whose message names the problem well enough to show as is."""


class UserError(ShammieError, ValueError):
    """A mistake in what the user asked for (bad path, bad option, bad config).

    The CLI prints its message without a traceback and exits with code 2."""


class InputError(ShammieError, ValueError):
    """An input a stage reads is missing, unreadable or of the wrong shape; the message names it."""


class StageRefused(ShammieError, RuntimeError):
    """The stage runner refuses to run: changed inputs or settings, a held lock, an empty input."""


class OutputError(ShammieError, RuntimeError):
    """The output location cannot be written (permissions, full disk, not a folder)."""


# errno values that mean "this output location cannot take the write", not a bug
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR}


def as_output_error(e: BaseException) -> OutputError | None:
    """A full disk, read-only or forbidden output as a one-line OutputError; None for any other error."""
    if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
        where = f" {e.filename}" if e.filename else ""
        return OutputError(f"cannot write{where}: {e.strerror or e}")
    return None
