"""Fast start: the commands that should answer at once load no model, plotting, PDF or image
library and no Ray, checked in fresh processes by ``bench/startup.py`` (whose timings are not
checked here), and ``colprune --version`` / ``import colprune`` load not even the store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import colprune as cp

ROOT = Path(__file__).resolve().parents[1]
NEVER = {"torch", "transformers", "matplotlib", "pypdfium2", "PIL", "ray", "pyarrow", "huggingface_hub"}


@pytest.fixture(scope="module")
def bench():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--runs", "1", "--json"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_the_bench_names_the_cpu_and_times_each_command(bench):
    assert bench["cpu"] and bench["runs"] == 1
    assert {"colprune --version", "colprune info X.h5", "colprune verify X.h5", "colprune search --help",
            "python -c 'import colprune'"} <= set(bench["commands"])
    assert all(r["seconds"] > 0 for r in bench["commands"].values())


def test_quick_commands_load_no_model_plot_pdf_image_or_ray(bench):
    for name, r in bench["commands"].items():
        assert not NEVER & set(r["heavy_modules"]), (name, r["heavy_modules"])


def test_version_and_import_colprune_load_not_even_the_store(bench):
    for name in ("colprune --version", "python -c 'import colprune'"):
        assert not {"numba", "h5py", "numpy", "scipy"} & set(bench["commands"][name]["heavy_modules"]), name


def test_delete_loads_no_model_plot_pdf_image_or_ray(tmp_path):
    path = tmp_path / "x.h5"
    rng = np.random.default_rng(0)
    with cp.Index.create(str(path), dim=8) as ix:
        ix.add(["a", "b"], [rng.standard_normal((3, 8)).astype(np.float32) for _ in range(2)])
    code = ("import sys\nfrom colprune.cli import main\nstatus = main(['delete', sys.argv[1], 'a'])\n"
            f"print(sorted(m for m in {sorted(NEVER)!r} if m in sys.modules))\nsys.exit(status)")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"
    with cp.Index.open(str(path)) as ix:
        assert ix.ids == ["b"]


@pytest.mark.parametrize("first", ["cp.pruning.AdaptiveThreshold", "cp.kernels.maxsim_scores", "cp.PRUNERS['adaptive']",
                                   "cp.Hit('a', 1.0).metadata", "cp.index.parse_where",
                                   "cp.__all__ and __import__('colprune', fromlist=['*'])"])
def test_each_lazy_name_works_as_the_first_one_used(first):
    """``import colprune`` loads the store, kernels and pruners on first use, whichever name comes first."""
    res = subprocess.run([sys.executable, "-c", f"import colprune as cp\nprint(repr({first}))"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip(), res.stderr[-2000:]
