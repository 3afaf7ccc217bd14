"""``colprune`` command line: a thin layer over the library, one module per command group.

Every subcommand is one :class:`Command` in :data:`COMMANDS` (name, help, examples, the function
that adds its arguments, the function that runs it); :func:`register` adds one. Errors a user can
cause end as one line on stderr and an exit status from :data:`EXIT_STATUSES`, never a traceback
(``--debug`` shows it); Ctrl-C says what was committed and how to resume; a closed pipe exits quietly
(the mapping is :mod:`colprune.cli.errors`).

Modules: :mod:`~colprune.cli.build` (build), :mod:`~colprune.cli.prune` (prune),
:mod:`~colprune.cli.search` (search), :mod:`~colprune.cli.serve` (serve), :mod:`~colprune.cli.maintenance` (info, repack, delete,
compact, verify, summarize, upgrade, show), :mod:`~colprune.cli.study`, :mod:`~colprune.cli.distill`
(distill-queries), :mod:`~colprune.cli.demo`, :mod:`~colprune.cli.sharded` (Ray and sharded
collections); shared pieces in :mod:`~colprune.cli.common` and :mod:`~colprune.cli.options`.
The command modules load on first use (:func:`commands`), so ``colprune --version`` loads none.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

from .. import __version__
from .errors import EXIT_PIPE, EXIT_STATUSES, exit_status, quiet_stdout, report_error

if TYPE_CHECKING:
    from .common import COMMANDS, Command, register

__all__ = ["main", "run", "build_parser", "commands", "Command", "COMMANDS", "register", "EXIT_STATUSES", "exit_status"]

_FMT = argparse.RawDescriptionHelpFormatter
_registered = False


def commands() -> list[Command]:
    """:data:`COMMANDS`, registered on first use: the command modules import the store and the
    kernels, which ``colprune --version`` does not need (``colprune.cli.COMMANDS`` calls this)."""
    global _registered
    from . import build, demo, distill, gc, maintenance, prune, retrain, search, serve, study
    from .common import COMMANDS, register

    if not _registered:
        _registered = True
        # the order ``colprune --help`` lists them
        for command in (build.BUILD, prune.PRUNE, search.SEARCH, maintenance.INFO, maintenance.REPACK, maintenance.DELETE,
                        maintenance.COMPACT, retrain.RETRAIN, maintenance.VERIFY, maintenance.SUMMARIZE, maintenance.UPGRADE,
                        maintenance.SHOW,
                        gc.GC, serve.SERVE, study.STUDY, distill.DISTILL_QUERIES, demo.DEMO):
            register(command)
    return COMMANDS


def __getattr__(name: str) -> Any:
    """``COMMANDS`` (registered on first use), ``Command`` and ``register``, from :mod:`.common`."""
    if name == "COMMANDS":
        return commands()
    if name in ("Command", "register"):
        from . import common

        return getattr(common, name)
    raise AttributeError(f"module 'colprune.cli' has no attribute {name!r}")


def _status_epilog() -> str:
    return "exit statuses:\n" + "\n".join(f"  {code:>3}  {text.replace('`', '')}" for code, text in EXIT_STATUSES)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line mistakes: ``colprune: error: MESSAGE (colprune CMD --help)``, exit status 2,
    instead of the usage block (subcommands' parsers are of this class too)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"colprune: error: {' '.join(message.split())} ({self.prog} --help)\n")


class _CommandParser(_Parser):
    """A command's parser: options and positionals in any order. argparse alone refuses
    ``colprune search INDEX -k 3 "query"`` (a ``*`` positional after an option is "unrecognized")."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._intermixing:  # the two passes of parse_known_intermixed_args
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the Python traceback too")
    parser = _Parser(
        prog="colprune", formatter_class=_FMT,
        description="Multi-vector index with adaptive patch pruning for visual document retrieval.",
        epilog="first steps:\n  colprune demo --docs pdfs\n  colprune build pdfs -o pages.h5\n"
        "  colprune search pages.h5 \"who invented the thermometer\"\n  colprune info pages.h5\n\n"
        "Every command has --help with examples.\n\n" + _status_epilog(),
    )
    parser.add_argument("--version", action="version", version=f"colprune {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="on an error, print the Python traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    parser.command_parsers = sub.choices  # type: ignore[attr-defined] - names and aliases, for main's hint
    for c in commands():
        p = sub.add_parser(
            c.name, help=c.help, aliases=list(c.aliases), formatter_class=_FMT, parents=[common],
            description=c.description or (c.help[:1].upper() + c.help[1:] + "."),
            epilog="examples:\n" + "\n".join(f"  {e}" for e in c.examples),
        )
        c.arguments(p)
        p.set_defaults(func=c.run)
    return parser


def _redeliver_swallowed_interrupts():
    """Ctrl-C that lands in a ``__del__`` or weakref callback is printed as "Exception ignored" and
    lost; this sends it again to the main thread, so one Ctrl-C always stops the command.
    Returns a function that restores the previous hook."""
    import _thread
    import threading

    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            t = threading.Timer(0.05, _thread.interrupt_main)
            t.daemon = True
            t.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook

    def restore() -> None:
        sys.unraisablehook = previous

    return restore


def _one_line_warnings(command: str):
    """colprune's own warnings as ``colprune CMD: warning: MESSAGE`` (not Python's two-line
    ``file:line:`` form); others as before. Returns a function that restores the previous printer."""
    import warnings

    from ..errors import ColpruneWarning
    from .errors import safe_stderr

    previous = warnings.showwarning

    def show(message, category, *args, **kwargs) -> None:
        if issubclass(category, ColpruneWarning):
            safe_stderr(f"colprune {command}: warning: {' '.join(str(message).split())}")
        else:
            previous(message, category, *args, **kwargs)

    warnings.showwarning = show

    def restore() -> None:
        warnings.showwarning = previous

    return restore


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``colprune ARGV`` and return its exit status (see :data:`EXIT_STATUSES`); nothing raised."""
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:  # at once: no command module loads
        print(f"colprune {__version__}")
        return 0
    from .common import interrupt_detail

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named with the command's --help, not colprune's
        parser.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    debug = bool(getattr(args, "debug", False)) or os.environ.get("COLPRUNE_DEBUG", "") not in ("", "0")
    restore_hook = _redeliver_swallowed_interrupts()
    restore_warnings = _one_line_warnings(args.command)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 - every error ends as one line and a status
        return report_error(e, args.command, debug=debug, interrupt_hint=interrupt_detail(args))
    finally:
        restore_hook()
        restore_warnings()


def run() -> None:
    """Console-script entry point: ``sys.exit(main())``, quiet on a closed pipe."""
    status = main()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        quiet_stdout()
        status = status or EXIT_PIPE
    sys.exit(status)

