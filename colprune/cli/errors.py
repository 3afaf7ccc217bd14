"""Error mapping of the command line, in one place: exception -> exit status and one line on stderr.

Errors a user can cause end as one line on stderr and an exit status from :data:`EXIT_STATUSES`,
never a traceback (``--debug`` shows it); Ctrl-C says what was committed and how to resume; a closed
pipe exits quietly.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable

from ..errors import (
    ColpruneError,
    FormatError,
    ModelLoadError,
    NotFoundError,
    SettingsMismatchError,
    UsageError,
)

__all__ = ["EXIT_STATUSES", "exit_status", "one_line", "report_error", "quiet_stdout", "safe_stderr", "EXIT_INTERNAL",
           "EXIT_USAGE", "EXIT_NOT_FOUND", "EXIT_BAD_INPUT", "EXIT_FORMAT", "EXIT_SETTINGS", "EXIT_CANNOT_WRITE", "EXIT_MODEL",
           "EXIT_INTERRUPTED", "EXIT_PIPE"]

#: ``(status, meaning)``; the README's table is this list.
EXIT_STATUSES: list[tuple[int, str]] = [
    (0, "success"),
    (1, "internal error (a bug): one line saying so; `--debug` prints the traceback"),
    (2, "usage: an unknown option, a bad value (`-k 0`, an empty query), options that do not go together"),
    (3, "not found: an input file or folder, the index, a page id"),
    (4, "bad input: an unreadable file with `--strict`, queries of the wrong dim, NaN vectors, "
        "an embeddings file without the importance its pruner needs"),
    (5, "not a colprune index: another file or a folder given as the index, a truncated or damaged file, "
        "a newer format"),
    (6, "settings differ from the index's: appending with another codec, pruner, encoder or dim "
        "(the message says what the index holds and what to run)"),
    (7, "cannot write: OUTPUT exists (add `--overwrite`), permission denied, another process is writing "
        "the index, disk full"),
    (8, "the model cannot be loaded: a missing package, a hub id without network, an unsupported model type"),
    (130, "interrupted (Ctrl-C): the message says what was committed and how to resume"),
    (141, "standard output closed early (piped into `head`, say): exits quietly, nothing on stderr"),
]
EXIT_INTERNAL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_FORMAT = 1, 2, 3, 4, 5
EXIT_SETTINGS, EXIT_CANNOT_WRITE, EXIT_MODEL, EXIT_INTERRUPTED, EXIT_PIPE = 6, 7, 8, 130, 141


def exit_status(e: BaseException) -> int:
    """The exit status for an exception (see :data:`EXIT_STATUSES`)."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError):
        return EXIT_PIPE
    if isinstance(e, UsageError):
        return EXIT_USAGE
    if isinstance(e, SettingsMismatchError):
        return EXIT_SETTINGS
    if isinstance(e, ModelLoadError):
        return EXIT_MODEL
    if isinstance(e, FormatError):
        return EXIT_FORMAT
    if isinstance(e, (NotFoundError, FileNotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(e, ColpruneError) and isinstance(e, OSError):  # LockedError
        return EXIT_CANNOT_WRITE
    if isinstance(e, ColpruneError):
        return EXIT_BAD_INPUT
    if isinstance(e, OSError):  # exists, permission, lock, disk full
        return EXIT_CANNOT_WRITE
    return EXIT_INTERNAL


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__



def safe_stderr(line: str) -> None:
    """Print ``line`` on stderr, or nothing when stderr is gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def quiet_stdout() -> None:
    """Point stdout at /dev/null (its reader is gone), so the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def report_error(e: BaseException, command: str, *, debug: bool, interrupt_hint: Callable[[], str] | None = None) -> int:
    """Say what went wrong in one line on stderr (the traceback too with ``debug``) and return the exit status.

    ``interrupt_hint`` says, on Ctrl-C, what was committed and how to resume.
    """
    if isinstance(e, KeyboardInterrupt):
        if debug:
            traceback.print_exc()
        detail = ""
        if interrupt_hint is not None:
            try:
                detail = ": " + interrupt_hint()
            except Exception:  # noqa: BLE001 - the message only
                detail = ""
        safe_stderr(f"colprune {command}: interrupted{detail}")
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError) or (isinstance(e, OSError) and getattr(e, "errno", None) == 32):
        quiet_stdout()  # EPIPE, also when wrapped elsewhere
        return EXIT_PIPE
    status = exit_status(e)
    if debug:
        traceback.print_exc()
    if status == EXIT_INTERNAL:
        safe_stderr(f"colprune {command}: internal error: {type(e).__name__}: {one_line(e)} "
                    "(a bug: run again with --debug for the traceback, and please report it)")
    else:
        safe_stderr(f"colprune {command}: error: {one_line(e)}")
    return status
