"""Start-up time of the commands that should answer at once, and the heavy modules each loads.

    python bench/startup.py                 # 7 runs of each, fresh processes, minimum reported
    python bench/startup.py --runs 3 --json

Each command runs as the ``colprune`` console script does (``colprune.cli.main``) in a fresh
Python process, once untimed (so the disk cache and Numba's kernel cache are warm), then
``--runs`` times; the figure is the minimum wall time (the least disturbed by other load).
``python -c pass`` is the floor any command pays. One more run of each lists the heavy modules
it left in ``sys.modules``: ``colprune --version``, ``info``, ``verify`` and ``search --help``
should load no model, plotting, PDF or image library and no Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _machine import cpu_line  # noqa: E402

#: Libraries that cost a start-up noticeably, or that a command that does not need them must not load.
HEAVY = ("torch", "transformers", "matplotlib", "pypdfium2", "PIL", "ray", "pyarrow", "huggingface_hub", "tqdm",
         "scipy", "numba", "h5py", "numpy")
#: The console script's body (``colprune = colprune.cli:main``), so no ``colprune`` on PATH is needed.
CLI = "import sys; from colprune.cli import main; sys.exit(main(sys.argv[1:]))"
PROBE = ("import atexit, sys\n"
         "def _report():\n"
         "    print('HEAVY ' + ' '.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)\n"
         "atexit.register(_report)\n")


def commands(index: str) -> dict[str, list[str]]:
    """What is timed: name -> the Python arguments of its process."""
    return {
        "python -c pass": ["-c", "pass"],
        "python -c 'import colprune'": ["-c", "import colprune"],
        "colprune --version": ["-c", CLI, "--version"],
        "colprune info X.h5": ["-c", CLI, "info", index],
        "colprune verify X.h5": ["-c", CLI, "verify", index],
        "colprune search --help": ["-c", CLI, "search", "--help"],
    }


def _run(args: list[str]) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise SystemExit(f"{args}: exit {res.returncode}\n{res.stderr[-2000:]}")
    return res


def seconds(args: list[str], runs: int) -> float:
    """Minimum wall time of ``runs`` fresh processes, after one untimed run."""
    _run(args)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        _run(args)
        best = min(best, time.perf_counter() - t)
    return best


def heavy_modules(args: list[str]) -> list[str]:
    """The :data:`HEAVY` modules in ``sys.modules`` when the process ends."""
    probe = PROBE.format(heavy=HEAVY)
    if args[:1] == ["-c"]:
        args = ["-c", probe + args[1], *args[2:]]
    err = _run(args).stderr
    line = next((x for x in err.splitlines() if x.startswith("HEAVY")), "HEAVY")
    return line.split()[1:]


def make_index(folder: str) -> str:
    """A small index (200 pages of 32 vectors, dim 128) to run ``info`` and ``verify`` on."""
    import numpy as np

    import colprune as cp

    path = os.path.join(folder, "X.h5")
    rng = np.random.default_rng(0)
    with cp.Index.create(path, dim=128) as ix:
        ix.add([f"doc{i}.pdf#1" for i in range(200)], [rng.standard_normal((32, 128)).astype(np.float32) for _ in range(200)],
               metadata=[{"source": f"doc{i}.pdf", "page": 1} for i in range(200)])
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command (the minimum is reported)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = make_index(tmp)
        out = {"cpu": cpu_line(), "python": sys.version.split()[0], "runs": args.runs, "commands": {}}
        for name, argv in commands(index).items():
            out["commands"][name] = {"seconds": round(seconds(argv, args.runs), 3), "heavy_modules": heavy_modules(argv)}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"start-up, minimum of {args.runs} fresh processes each, warm cache; {out['cpu']}, Python {out['python']}")
    print(f"{'command':<30} {'seconds':>8}  heavy modules loaded")
    for name, r in out["commands"].items():
        print(f"{name:<30} {r['seconds']:>8.3f}  {' '.join(r['heavy_modules']) or '-'}")


if __name__ == "__main__":
    main()
