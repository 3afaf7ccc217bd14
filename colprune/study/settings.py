"""What a study hands back to build with: each budgeted variant's solved parameter, and the
``colprune prune`` line that derives that variant from a full index.

A budget is solved per method (:func:`colprune.study.budgets.solve`): the attention pruners'
``k`` (or ``scale``), the others' ``ratio``. :func:`prune_command` writes the command that
derives the same variant with the CLI; ``tests/test_study.py`` parses each one with the CLI's
own parser and checks that it builds the same pruner.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from ..pruning import PRUNERS
from .budgets import solved_name
from .grid import Variant

__all__ = ["Setting", "option_params", "solved_text", "prune_command", "setting"]


@dataclass(frozen=True)
class Setting:
    """One budgeted variant as the study solved it: ``params`` are all its pruner's parameters,
    ``solved`` the one the budget set (``"k=-0.1234"``), ``command`` the ``colprune prune`` line
    (None for a blend of signals, which only the API takes)."""

    method: str
    budget: float | None
    pruner: str
    signal: Any
    params: dict
    solved: str
    command: str | None


def option_params() -> set[str]:
    """The pruner parameters ``colprune prune`` takes as options (``--k``, ``--ratio``...): those
    whose default is a number or a string (the rule of ``colprune.cli.options.pruner_params``);
    any other parameter goes into ``--params JSON``."""
    names = set()
    for cls in PRUNERS.values():
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and isinstance(p.default, (int, float, str)) and not isinstance(p.default, bool):
                names.add(name)
    return names


def _value(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float) else shlex.quote(str(v))


def solved_text(v: Variant, params: dict) -> str:
    """``"k=-0.1234"``: the parameter ``v``'s budget solved, as it was solved; "" without a budget."""
    name = solved_name(v)
    return "" if name is None else f"{name}={params[name]:g}"


def prune_command(full: str, out: str, v: Variant, params: dict, codec: str = "float16") -> str | None:
    """``colprune prune FULL OUT --pruner NAME --PARAM VALUE ... [--signal S] [--dtype C]``: the
    command that derives ``v`` with ``params`` from the full index ``full``; None when ``v``
    prunes by a blend of signals (``Index.derive(..., signal={...})`` takes those)."""
    if isinstance(v.signal, dict):
        return None
    options = option_params()
    parts = ["colprune", "prune", shlex.quote(full), shlex.quote(out), "--pruner", v.pruner]
    rest = {}
    for name, value in params.items():
        if name in options and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            parts += [f"--{name}", _value(value)]
        else:
            rest[name] = value
    if rest:
        parts += ["--params", shlex.quote(json.dumps(rest))]
    if v.signal:
        parts += ["--signal", shlex.quote(v.signal)]
    if codec != "float16":
        parts += ["--dtype", codec]
    return " ".join(parts)


def setting(full: str, v: Variant, params: dict) -> Setting:
    """The :class:`Setting` of ``v`` solved to ``params``; its command writes ``METHOD-BUDGET.h5``."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", v.method) + (f"-{v.budget:g}" if v.budget is not None else "")
    return Setting(v.method, v.budget, v.pruner, v.signal, dict(params), solved_text(v, params),
                   prune_command(full, f"{name}.h5", v, params))


def _default_first(settings: list[Setting]) -> list[Setting]:
    return sorted(settings, key=lambda s: (s.method != "default", s.method, -(s.budget or 0)))


def settings_markdown(settings: list[Setting], full: str) -> str:
    """The ``results.md`` section: the default's command per budget, then every budgeted method's."""
    if not settings:
        return ""
    default = [s for s in settings if s.method == "default"]
    out = ["\n## Settings: build what the study measured\n\n",
           f"Each line derives one variant from the study's full index `{full}` without re-encoding (`colprune prune`; "
           "add `--dtype int8` or `--dtype binary` for the other codecs). For your own documents, build a full index "
           "with the same encoder (`colprune build DOCS -o full.h5 --pruner none --signals`) and run the same line on "
           "it: a solved `k` keeps about the budget's share on pages like these, a `ratio` that share of every "
           "page's patches.\n\n"]
    if default:
        out.append("The default (recommended) method at each budget:\n\n| budget | solved | command |\n|---|---|---|\n")
        out += [f"| {s.budget:g} | {s.solved} | `{s.command}` |\n" for s in default]
        out.append("\n")
    out.append("Every budgeted method:\n\n| method | budget | solved | command |\n|---|---|---|---|\n")
    for s in _default_first(settings):
        command = f"`{s.command}`" if s.command else f"a blend of signals: `Index.derive(..., signal={s.signal})`"
        out.append(f"| {s.method} | {s.budget:g} | {s.solved} | {command} |\n")
    return "".join(out)


def settings_lines(settings: list[Setting]) -> list[str]:
    """What the study prints after its table: the default's solved parameter and command per budget."""
    default = [s for s in settings if s.method == "default"]
    if not default:
        return []
    return ["", "the default method, to build at each budget (results.md lists every method's command):"] + [
        f"  budget {s.budget:g} ({s.solved}): {s.command}" for s in default]
