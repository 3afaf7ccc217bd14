"""Argument types and pruner options shared by the commands, written once.

:func:`positive_int`, :func:`nonneg_int`, :func:`positive_float` are argparse ``type=`` functions;
:func:`add_pruner_args` adds ``--pruner``, one option per pruner parameter and ``--params JSON``, and
:func:`pruner_from_args` turns them into a :class:`~colprune.pruning.Pruner`.
"""

from __future__ import annotations

import argparse
import inspect
import json
from typing import Any

from ..errors import UsageError
from ..pruning import PRUNERS, Pruner, make_pruner
from ..serve import quiet_libraries
from .errors import one_line

__all__ = ["is_quiet", "quiet_if_asked", "positive_int", "nonneg_int", "positive_float", "pruner_params", "accepted_params",
           "add_pruner_args", "pruner_given", "params_json", "pruner_from_args", "add_where_argument", "where_from_args",
           "WHERE_FORMS", "counted"]


def is_quiet(args: argparse.Namespace) -> bool:
    """Whether ``-q``/``--quiet`` was given."""
    return bool(getattr(args, "quiet", False))


def quiet_if_asked(args: argparse.Namespace) -> None:
    """With ``-q``, silence transformers' and the hub's progress bars and warnings before a model loads."""
    if is_quiet(args):
        quiet_libraries()


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def nonneg_int(text: str) -> int:
    """argparse type: an integer of 0 or more."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return v


# -- where filters ----------------------------------------------------------------------------

#: The forms every ``--where`` takes (search, delete): one parser, :func:`colprune.index.parse_where`.
WHERE_FORMS = ("source=report.pdf (the file as search and info print it), page>=3, page<10, kind!=image, "
               "or JSON '{\"source\": \"report.pdf\", \"page\": {\"gte\": 3}}'; repeat to combine")


def add_where_argument(p: argparse.ArgumentParser, which: str) -> None:
    """``--where FILTER`` (repeatable) with the one help text; ``which`` says what the filter picks."""
    p.add_argument("--where", action="append", default=None, metavar="FILTER",
                   help=f"{which} whose metadata match: {WHERE_FORMS}")


def where_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--where`` read as one filter (FIELD=VALUE, FIELD>=X... and JSON alike); None when not given."""
    from ..index import parse_where

    return parse_where(getattr(args, "where", None))


# -- pruner options --------------------------------------------------------------------------

def pruner_params() -> dict[str, Any]:
    """Every constructor parameter of every registered pruner, with its default's type."""
    params: dict[str, Any] = {}
    for cls in PRUNERS.values():
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and isinstance(p.default, (int, float, str)) and not isinstance(p.default, bool):
                params.setdefault(name, type(p.default))
    return params


def accepted_params(name: str) -> set[str]:
    """The constructor parameters of the pruner registered as ``name``."""
    return set(inspect.signature(PRUNERS[name].__init__).parameters) - {"self"}


def add_pruner_args(p: argparse.ArgumentParser, default: str | None, default_help: str) -> None:
    """Add the ``pruning`` group: ``--pruner``, one option per pruner parameter, ``--params JSON``."""
    g = p.add_argument_group("pruning")
    g.add_argument("--pruner", default=default, choices=sorted(PRUNERS), help=f"pruning method ({default_help})")
    for name, typ in pruner_params().items():
        owners = [n for n in PRUNERS if name in accepted_params(n)]
        g.add_argument(f"--{name}", type=typ, default=None, help=f"parameter of {', '.join(owners)}")
    g.add_argument("--params", default=None, metavar="JSON",
                   help='all parameters as JSON, e.g. for prune-merge: \'{"pruner": {"name": "adaptive", '
                        '"params": {"k": 0}}, "merger": {"name": "ward", "params": {"ratio": 0.5}}}\'')


def pruner_given(args: argparse.Namespace) -> bool:
    """Whether any pruning option was given."""
    return args.pruner is not None or bool(args.params) or any(getattr(args, n) is not None for n in pruner_params())


def params_json(args: argparse.Namespace) -> dict[str, Any]:
    """``--params`` read as a JSON object (empty when not given)."""
    raw = getattr(args, "params", None)
    if not raw:
        return {}
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"--params is not JSON: {e}") from None
    if not isinstance(params, dict):
        raise UsageError("--params must be a JSON object")
    return params


def pruner_from_args(args: argparse.Namespace, name: str | None = None) -> Pruner:
    """The pruner ``name`` (default ``--pruner``) with the parameters the options give; a misfit is a UsageError."""
    name = name or args.pruner
    given = {n: getattr(args, n) for n in pruner_params() if getattr(args, n) is not None}
    given.update(params_json(args))
    extra = sorted(set(given) - accepted_params(name))
    if extra:
        raise UsageError(f"--{extra[0]} does not apply to --pruner {name}")
    try:
        return make_pruner(name, **given)
    except (TypeError, ValueError) as e:
        raise UsageError(f"--pruner {name}: {one_line(e)}") from None


def counted(n: int, noun: str) -> str:
    """``"1 page"``, ``"2 pages"``, ``"1,024 segments"``: a count with its noun in the right number."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
