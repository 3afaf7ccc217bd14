"""The benches run from a clean clone (tiny sizes; figures are not checked here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["maxsim.py", "twostage.py"])
def test_bench_quick_json(script):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    if script == "maxsim.py":
        assert {"pages_per_s", "ratio_vs_best_peer", "fraction_of_gemm_roofline", "max_abs_diff"} <= set(out)
        assert out["max_abs_diff"]["colprune-float32"] < 1e-4
    else:
        assert out["two_stage"] and out["exact_ms_per_query"] > 0


def test_scale_bench_tiny(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--pages", "400", "--chunk", "150",
                          "--queries", "4", "--raw-pages", "400", "--candidates", "40", "--json", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["ingest"]["pages_per_s"] > 0 and out["search"]["pages"] == 400
    assert out["delete_compact"]["deleted_never_returned"] and out["search"]["filtered_ok"]
    assert out["delete_compact"]["reclaimed_share_of_deleted"] > 0.9


def test_plaid_bench_without_fast_plaid():
    """bench/plaid.py's colprune side runs where fast-plaid is not installed, and says the plaid rows are skipped."""
    env = {k: v for k, v in os.environ.items() if k != "COLPRUNE_PLAID_PYTHON"}
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "plaid.py"), "--quick", "--json"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    (synthetic,) = out["sets"]
    configs = [r["config"] for r in synthetic["rows"]]
    assert configs[:2] == ["float16 exact", "float16 two-stage candidates=50"]
    assert {r["system"] for r in synthetic["rows"]} == {"colprune"}
    assert synthetic["rows"][0]["recall@10"] == 1.0 and synthetic["rows"][0]["bytes_per_page"] > 0
    assert any(n.startswith("fast-plaid: skipped: no --plaid-python") for n in synthetic["notes"])
    assert "fast-plaid: skipped" in res.stderr
