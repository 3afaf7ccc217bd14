"""Metadata filters (``where``): one parser for the API, the command line and the server, and their evaluation.

A ``where`` dict maps a metadata field to a value (equality) or to ``{op: operand}`` with ops
``eq``, ``ne``, ``in`` (a list), ``gt``, ``gte``, ``lt``, ``lte``; conditions on several fields
are ANDed. :func:`parse_where` builds one from what users type, :func:`check_where` validates
one, and :func:`filter_mask` evaluates it on a segment's columnar copy of the metadata, before
any vector is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError, UsageError
from .segment import Segment

__all__ = ["FILTER_OPS", "WhereError", "parse_where", "check_where", "filter_mask"]

FILTER_OPS = ("eq", "ne", "in", "gt", "gte", "lt", "lte")
_RANGE_OPS = {">=": "gte", ">": "gt", "<=": "lte", "<": "lt", "!=": "ne"}
_EXPR = re.compile(r"^\s*([^<>=!\s]+)\s*(>=|<=|==|!=|=|>|<)(.*)$")
_HOW = "write FIELD=VALUE, FIELD>=X, FIELD<X (or a JSON object)"


class WhereError(UsageError, InvalidInputError):
    """A ``where`` filter that cannot be read: a usage error on the command line (exit 2), bad input in the API."""


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _check_cond(field: str, cond: Any) -> None:
    if isinstance(cond, dict):
        bad = set(cond) - set(FILTER_OPS)
        if bad or not cond:
            raise WhereError(f"where {field!r}: conditions are a value or an object of {sorted(FILTER_OPS)}, got {cond!r}")
        if "in" in cond and not isinstance(cond["in"], list):
            raise WhereError(f"where {field!r}: 'in' takes a list, got {cond['in']!r}")


def _add_expression(out: dict[str, Any], e: str) -> None:
    m = _EXPR.match(e)
    if not m:
        raise WhereError(f"--where {e!r}: {_HOW}")
    field, op, raw = m.group(1), m.group(2), m.group(3)
    if not raw.strip() or raw.strip()[0] in "<>=!":
        raise WhereError(f"--where {e!r}: {_HOW}")
    value = _scalar(raw)
    if op in ("=", "=="):
        out[field] = value
    else:
        prev = out.get(field)
        cond = dict(prev) if isinstance(prev, dict) else {}
        cond[_RANGE_OPS[op]] = value
        out[field] = cond


def parse_where(spec: str | Sequence[str | dict] | dict | None) -> dict[str, Any] | None:
    """``["source=a.pdf", "page>=3", '{"kind": {"in": ["pdf"]}}']`` -> one ``where`` dict (None when empty).

    ``spec`` is a dict, one expression, or a list of them. Each expression is a JSON object or
    ``FIELD=VALUE``, ``FIELD>=X``, ``FIELD>X``, ``FIELD<=X``, ``FIELD<X``, ``FIELD!=X``; values
    are read as JSON when they parse (numbers, true), else as text. Conditions on the same
    field combine (``page>=2`` and ``page<5``). Raises :class:`WhereError` (a
    :class:`~colprune.errors.UsageError` and an :class:`~colprune.errors.InvalidInputError`).
    """
    if spec is None:
        return None
    items: list[Any] = [spec] if isinstance(spec, (dict, str)) else list(spec)
    out: dict[str, Any] = {}
    for e in items:
        if isinstance(e, str) and e.strip().startswith("{"):
            try:
                e = json.loads(e)
            except json.JSONDecodeError as err:
                raise WhereError(f"--where {e!r} is not JSON ({err})") from None
        if isinstance(e, dict):
            for field, cond in e.items():
                _check_cond(field, cond)
                out[field] = cond
        elif isinstance(e, str):
            _add_expression(out, e)
        else:
            raise WhereError(f"where: expected an expression or an object, got {e!r}")
    return out or None


def check_where(where: Any, known: set[str] | None = None) -> dict[str, Any]:
    """``where`` itself when it is a valid filter, else :class:`~colprune.errors.InvalidInputError`.

    Checks the shape (a non-empty dict of field -> value or ``{op: operand}``), the operators and
    their operands, and, when ``known`` is given, that every field is one of them.
    """
    if not isinstance(where, dict) or not where:
        raise InvalidInputError(f"where must be a non-empty dict of metadata field -> condition, got {where!r}")
    for field, cond in where.items():
        if known is not None and field not in known:
            raise InvalidInputError(f"filter on unknown metadata field {field!r}; filterable fields: {sorted(known)}")
        if isinstance(cond, dict) and not cond:
            raise InvalidInputError(f"filter {field!r}: an empty condition {{}}; use one of {list(FILTER_OPS)}")
        for op, x in (cond if isinstance(cond, dict) else {"eq": cond}).items():
            _check_operand(op, x, field)
    return where


def _check_operand(op: str, x: Any, field: str) -> None:
    if op not in FILTER_OPS:
        raise InvalidInputError(f"filter {field!r}: unknown operator {op!r}; use one of {list(FILTER_OPS)}")
    if op in ("eq", "ne", "in"):
        if op == "in" and isinstance(x, (str, bytes, dict)):
            raise InvalidInputError(f"filter {field!r}: 'in' takes a list of values, got {type(x).__name__}")
        try:
            items = list(x) if op == "in" else [x]
        except TypeError:
            raise InvalidInputError(f"filter {field!r}: 'in' takes a list of values, got {type(x).__name__}") from None
        for item in items:
            if not isinstance(item, (str, bool, int, float)):
                raise InvalidInputError(f"filter {field!r}: cannot compare with {type(item).__name__} {item!r}")
    elif isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidInputError(f"filter {field!r}: {op!r} takes a number, got {x!r}")


def filter_mask(seg: Segment, where: dict[str, Any], known: set[str]) -> np.ndarray:
    """Documents of ``seg`` whose metadata matches ``where`` (all conditions ANDed): ``(n_docs,)`` bool.

    ``where`` maps a metadata field to a value (equality) or to ``{op: operand}`` with ops
    ``eq``, ``ne``, ``in`` (a list), ``gt``, ``gte``, ``lt``, ``lte`` (numbers). Strings
    compare exactly; numbers as float64; booleans as 0/1. A page without the field never
    matches (``ne`` included). ``known`` are the fields of the whole collection.
    """
    check_where(where)  # shape, operators and operands, before any column is read
    cols = seg.filter_columns()
    n = seg.n_docs
    mask = np.ones(n, bool)
    for field, cond in where.items():
        if field not in known:
            raise InvalidInputError(f"filter on unknown metadata field {field!r}; filterable fields: {sorted(known)}")
        num, codes, values = cols.get(field, (np.full(n, np.nan), np.full(n, -1, np.int32), []))
        ops = cond if isinstance(cond, dict) else {"eq": cond}
        for op, x in ops.items():
            mask &= _apply(op, x, num, codes, values, field)
    return mask


def _apply(op: str, x: Any, num: np.ndarray, codes: np.ndarray, values: list[str], field: str) -> np.ndarray:
    if op not in FILTER_OPS:
        raise InvalidInputError(f"filter {field!r}: unknown operator {op!r}; use one of {list(FILTER_OPS)}")
    if op in ("eq", "ne", "in"):
        items = list(x) if op == "in" else [x]
        if op == "in" and isinstance(x, (str, bytes, dict)):
            raise InvalidInputError(f"filter {field!r}: 'in' takes a list of values, got {type(x).__name__}")
        hit = np.zeros(num.shape[0], bool)
        lookup = {v: i for i, v in enumerate(values)}
        for item in items:
            if isinstance(item, str):
                if item in lookup:
                    hit |= codes == lookup[item]
            elif isinstance(item, (bool, int, float)) and not isinstance(item, complex):
                hit |= num == float(item)
            else:
                raise InvalidInputError(f"filter {field!r}: cannot compare with {type(item).__name__} {item!r}")
        if op == "ne":
            present = (codes >= 0) | ~np.isnan(num)
            return present & ~hit
        return hit
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidInputError(f"filter {field!r}: {op!r} takes a number, got {x!r}")
    with np.errstate(invalid="ignore"):
        return {"gt": num > x, "gte": num >= x, "lt": num < x, "lte": num <= x}[op]
