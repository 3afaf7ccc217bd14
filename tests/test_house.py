"""The house rules of docs/architecture.md, checked on the source: module and function sizes,
no other module's private names, no import cycles.

Run alone with ``python -m pytest tests/test_house.py -q``; ``ruff check .`` and ``lint-imports``
(the layer contracts in ``.importlinter``) run beside it in CI.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "colprune"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# A module may pass MAX_MODULE_LINES only with this marker and a reason in its first lines;
# a function may pass MAX_FUNCTION_LINES only with a comment "# long: <reason>" right above it.
LONG_MODULE = "# long module:"
LONG_FUNCTION = "# long:"
# a third-party private reached on purpose says why on its line: "# house: <reason>"
EXEMPT = "# house:"
# private-looking names that are public API (namedtuple's, the interpreter's)
PUBLIC_UNDERSCORED = {"_asdict", "_replace", "_fields", "_make", "_field_defaults", "_exit", "_getframe",
                      "_current_frames", "_thread", "_name_", "_value_", "_missing_", "_generate_next_value_"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in PUBLIC_UNDERSCORED


def test_modules_are_small():
    big = []
    for p in _modules():
        lines = p.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_MODULE_LINES and not any(line.startswith(LONG_MODULE) for line in lines[:40]):
            big.append(f"{_rel(p)}: {len(lines)} lines")
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by verb, or say why with '{LONG_MODULE}'): {big}"


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_functions_are_short():
    long = []
    for p in _modules():
        lines = p.read_text(encoding="utf-8").splitlines()
        for fn in _functions(ast.parse("\n".join(lines))):
            n = fn.end_lineno - fn.lineno + 1
            if n <= MAX_FUNCTION_LINES:
                continue
            first = min([fn.lineno] + [d.lineno for d in fn.decorator_list])
            above = lines[first - 2].strip() if first >= 2 else ""
            if not above.startswith(LONG_FUNCTION):
                long.append(f"{_rel(p)}:{fn.lineno} {fn.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines without a '{LONG_FUNCTION} <reason>' comment: {long}"


def _own_names(tree: ast.AST) -> set[str]:
    """Every name a module defines itself: functions, classes, assignments, attributes set on self."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.arg):
            own.add(node.arg)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
    return own


def private_reach_ins(path: Path) -> list[str]:
    """``from x import _y``, ``mod._y`` and ``obj._y`` where ``_y`` is not this module's own name."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if _is_private(alias.name) and not (node.module or "").startswith("__future__"):
                    found.append(f"{_rel(path)}:{node.lineno} imports {alias.name} from {'.' * node.level}{node.module or ''}")
        elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
            if EXEMPT in lines[node.lineno - 1]:
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                continue
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super":
                continue
            found.append(f"{_rel(path)}:{node.lineno} uses .{node.attr}")
    return found


def test_no_private_names_of_other_modules():
    found = [hit for p in _modules() for hit in private_reach_ins(p)]
    assert not found, "another module's private names used (make them public, or move the code): " + "; ".join(found)


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the test extra)")
    graph = grimp.build_graph("colprune", include_external_packages=False)
    packages = {m for m in graph.modules if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").exists()}
    leaves = sorted(graph.modules - packages)
    edges = {m: {d for d in graph.find_modules_directly_imported_by(m) if d in leaves and d != m} for m in leaves}
    cycles = _strongly_connected(edges)
    assert not cycles, f"import cycles between modules (also those hidden inside functions): {cycles}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_sees_a_reach_in(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .other import _hidden\n\ndef f(ix):\n    return ix._segments, self_ok()\n", encoding="utf-8")
    found = private_reach_ins(bad)
    assert any("_hidden" in f for f in found) and any("_segments" in f for f in found)
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


if __name__ == "__main__":  # pragma: no cover - a quick report without pytest
    for p in _modules():
        for hit in private_reach_ins(p):
            print(hit)
    print(os.linesep.join(f"{_rel(p)}: {len(p.read_text().splitlines())}" for p in _modules()
                          if len(p.read_text().splitlines()) > MAX_MODULE_LINES))
