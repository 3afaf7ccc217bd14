import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import colprune as cp
from colprune.cli import build_parser, main
from colprune.index import layout

from conftest import pages


@pytest.fixture
def pt_file(tmp_path, rng):
    ids, embs, imps = pages(rng, 12, dim=16, lo=3)
    path = tmp_path / "pages.pt"
    torch.save({"embeddings": [torch.from_numpy(e) for e in embs], "importance": [torch.from_numpy(i) for i in imps],
                "ids": ids, "metadata": [{"n": i} for i in range(12)]}, path)
    return path, ids, embs, imps


def test_build_prune_search_info(tmp_path, pt_file, capsys):
    path, ids, embs, imps = pt_file
    full, pruned = tmp_path / "full.h5", tmp_path / "pruned.h5"
    assert main(["build", str(path), "-o", str(full), "--pruner", "none", "-q"]) == 0
    assert "12 pages" in capsys.readouterr().out
    assert main(["prune", str(full), str(pruned), "--pruner", "adaptive", "--k", "-0.25", "-q"]) == 0
    out = capsys.readouterr().out
    assert "12 pages" in out and "per page" in out
    with cp.Index.open(pruned) as index:
        assert index.pruner == cp.AdaptiveThreshold(-0.25) and index.get("doc-3").metadata == {"n": 3}
    queries = tmp_path / "q.npy"
    np.save(queries, np.stack([embs[5][:3], embs[9][:3]]))
    assert main(["search", str(full), str(queries), "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["hits"][0]["id"] for r in res] == ["doc-5", "doc-9"] and len(res[0]["hits"]) == 2
    assert main(["search", str(full), str(queries), "-k", "1"]) == 0
    assert "doc-5" in capsys.readouterr().out
    assert main(["info", str(pruned)]) == 0
    out = capsys.readouterr().out
    assert f"colprune-index v{layout.FORMAT_VERSION}" in out and "adaptive" in out and "bytes/page" in out
    assert main(["info", str(full), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keep_ratio"] == 1.0


def test_build_is_resumable_and_reads_npz_and_npy(tmp_path, rng, capsys):
    ids, embs, imps = pages(rng, 6, dim=8, lo=2)
    offsets = np.r_[0, np.cumsum([e.shape[0] for e in embs])]
    npz = tmp_path / "csr.npz"
    np.savez(npz, vectors=np.concatenate(embs), offsets=offsets, importance=np.concatenate(imps), ids=np.array(ids))
    out = tmp_path / "i.h5"
    assert main(["build", str(npz), "-o", str(out), "--pruner", "ratio", "--ratio", "0.5", "-q"]) == 0
    assert main(["build", str(npz), "-o", str(out), "--pruner", "ratio", "--ratio", "0.5", "-q"]) == 0
    assert "skipped 6 pages" in capsys.readouterr().out
    npy = tmp_path / "stack.npy"
    np.save(npy, rng.standard_normal((3, 4, 8)).astype(np.float32))
    assert main(["build", str(npy), "-o", str(tmp_path / "n.h5"), "--pruner", "none", "-q"]) == 0
    with cp.Index.open(tmp_path / "n.h5") as index:
        assert index.ids == ["stack:0", "stack:1", "stack:2"]
    with cp.Index.open(out) as index:
        assert index.ids == ids


def test_errors_are_one_line_with_exit_2(tmp_path, pt_file, capsys):
    path, *_ = pt_file
    assert main(["info", str(tmp_path / "absent.h5")]) == 2
    assert "no index at" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["info", str(bad)]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert main(["build", str(path), "-o", str(tmp_path / "x.h5"), "--pruner", "adaptive", "--ratio", "0.3", "-q"]) == 2
    assert "--ratio does not apply to --pruner adaptive" in capsys.readouterr().err
    plain = tmp_path / "plain.npy"
    np.save(plain, np.ones((2, 3, 8), np.float32))
    assert main(["build", str(plain), "-o", str(tmp_path / "y.h5"), "--pruner", "adaptive", "-q"]) == 2
    assert "needs importance" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["build", "prune", "search", "info", "show", "demo"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_console_script_and_demo(tmp_path):
    res = subprocess.run([sys.executable, "-m", "colprune.cli", "demo", "--out", str(tmp_path), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "saved" in res.stdout and "top-1 correct: full 4/4, pruned 4/4" in res.stdout
    assert (tmp_path / "full.h5").exists() and (tmp_path / "pruned.h5").exists()


def test_synthetic_demo(tmp_path, capsys):
    assert main(["demo", "--synthetic", "--pages", "30", "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "saved" in out and "top-1 correct" in out
