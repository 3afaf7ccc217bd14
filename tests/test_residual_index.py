"""Residual codecs (residual1/2/4, format 4) as a collection's codec: codebook trained on the first write and
stored once, segments of codes + packed residuals + inverted lists, drift and retraining, derive, compaction,
crash safety, the CLI, and format 3 collections still written as format 3."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import GOLDEN

import colprune as cp
from colprune.cli import main
from colprune.index import layout as L
from colprune.index import manifest as M
from colprune.index.training import CodebookDriftWarning

DIM = 32


def clustered(rng, n_pages: int, per_page: int = 12, n_clusters: int = 24, dim: int = DIM, scale: float = 1.0):
    """Pages whose vectors lie near a few shared centres (as real token vectors do), unit-normalised."""
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    pages = []
    for _ in range(n_pages):
        pick = rng.integers(0, n_clusters, per_page)
        v = centres[pick] + 0.35 * rng.standard_normal((per_page, dim)).astype(np.float32)
        pages.append((scale * v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return pages


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    pages = clustered(rng, 160, n_clusters=64)  # enough distinct content that the top 10 is no coin toss
    ids = [f"p{i}" for i in range(len(pages))]
    imps = [rng.random(p.shape[0]) for p in pages]
    queries = [p[:4] + 0.1 * rng.standard_normal((4, DIM)).astype(np.float32) for p in pages[::8]]
    return ids, pages, imps, queries


def top_ids(index, queries, k=10, **kw):
    return [[h.id for h in hits] for hits in index.search(queries, k=k, **kw)]


def recall(got, want):
    return np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want)])


def test_round_trip_codebook_and_segments(tmp_path, data):
    ids, pages, imps, _ = data
    path = tmp_path / "r2"
    with cp.Index.create(path, dim=DIM, dtype="residual2") as index:
        assert index.codebook is None and index.format_version == L.FORMAT_VERSION == 4
        index.add(ids, pages, imps, metadata=[{"n": i} for i in range(len(ids))])
        cb = index.codebook
        n = sum(p.shape[0] for p in pages)
        assert cb.nbits == 2 and cb.dim == DIM and cb.n_trained == n - n // 8  # an eighth held out to measure the error
        assert cb.n_centroids == cp.kernels.codebook_size(cb.n_trained) and cb.train_error > 0
    with cp.Index.open(path) as index:
        snap = index.snapshot()
        assert snap.manifest["codebook"]["name"] == cb.name and os.path.isfile(path / L.CODEBOOKS / cb.name)
        seg = snap.segments[0]
        data_ = seg.read_vectors(0, 3)
        assert data_[L.VECTORS].dtype == np.uint8 and data_[L.VECTORS].shape[1] == DIM * 2 // 8
        assert data_[L.CODES].dtype == np.uint16 and int(data_[L.CODES].max()) < cb.n_centroids
        lists, docs = seg.inverted_lists()
        assert lists.shape == (cb.n_centroids + 1,) and docs.max() < seg.n_docs
        page = index.get("p5")
        assert page.vectors.dtype == np.float32 and page.metadata == {"n": 5}
        err = np.mean(np.sum((page.vectors - pages[5]) ** 2, axis=1))
        assert err < 0.5 * np.mean(np.sum(pages[5] ** 2, axis=1))  # a reconstruction, not noise
        info = index.info()
        assert info["codec"] == "residual2" and info["bytes_per_vector"] == 2 + DIM * 2 // 8
        assert info["codebook"]["n_centroids"] == cb.n_centroids and info["holds"]["codebook"] > 0
        assert info["codebook"]["bytes_per_page"] == pytest.approx(info["codebook"]["bytes"] / len(index))
        assert index.verify()["docs"] == len(ids)


def test_search_is_close_to_float16(tmp_path, data):
    ids, pages, imps, queries = data
    with cp.Index.create(tmp_path / "f16", dim=DIM) as full:
        full.add(ids, pages, imps)
        want = top_ids(full, queries)
    with cp.Index.create(tmp_path / "r2", dim=DIM, dtype="residual2") as index:
        index.add(ids, pages, imps)
        assert recall(top_ids(index, queries), want) >= 0.9
        assert recall(top_ids(index, queries, candidates=40, nprobe=8), want) >= 0.8


def test_add_after_training_reuses_the_codebook_and_records_its_error(tmp_path, data):
    ids, pages, imps, _ = data
    with cp.Index.create(tmp_path / "r", dim=DIM, dtype="residual4") as index:
        index.add(ids[:100], pages[:100], imps[:100])
        name = index.codebook.name
        index.add(ids[100:], pages[100:], imps[100:], commit_every=20)  # same distribution: no drift warning
        assert index.codebook.name == name and len(index) == len(ids)
        entries = index.snapshot().manifest["segments"]
        assert all(e.get("error", 0) < 1.5 * index.codebook.train_error for e in entries)
        for seg in index.snapshot().segments:
            assert seg.codebook_name == name
        assert len(os.listdir(tmp_path / "r" / L.CODEBOOKS)) == 1


def test_drift_warns_once_and_retrain_makes_a_new_codebook(tmp_path, data):
    ids, pages, imps, queries = data
    rng = np.random.default_rng(3)
    path = tmp_path / "drift"
    with cp.Index.create(path, dim=DIM, dtype="residual2") as index:
        index.add(ids[:40], pages[:40], imps[:40])
        old = index.codebook
        far = clustered(rng, 30, scale=4.0)  # other centres, four times the norm
        with pytest.warns(CodebookDriftWarning, match="colprune retrain"):
            index.add([f"far{i}" for i in range(15)], far[:15])
        with warnings.catch_warnings():
            warnings.simplefilter("error", CodebookDriftWarning)  # once per open index
            index.add([f"far{i}" for i in range(15, 30)], far[15:])
        before = {p.id: p.vectors for p in index.iter_pages()}
        res = index.compact(retrain=True)
        new = index.codebook
        assert new.name != old.name and res["segments_after"] >= 1 and len(index) == 70
        errors = {p.id: float(np.mean(np.sum((p.vectors - before[p.id]) ** 2, axis=1))) for p in index.iter_pages()}
        assert all(np.isfinite(list(errors.values())))
        assert index.verify()["docs"] == 70
        for i in range(M.KEEP_MANIFESTS):  # the old codebook goes once no kept manifest names it
            index.delete([f"p{i}"])
        assert os.listdir(path / L.CODEBOOKS) == [new.name]
    with cp.Index.open(path) as index:
        assert index.codebook.name == new.name and index.search(queries[0], k=3)


def test_derive_float16_to_residual2_with_a_pruner(tmp_path, data):
    ids, pages, imps, queries = data
    with cp.Index.create(tmp_path / "full", dim=DIM) as full:
        full.add(ids, pages, imps, pruner="none")
        derived = full.derive(tmp_path / "lean", "ratio", ratio=0.5, dtype="residual2")
        n_full = full.n_vectors
    with derived:
        assert derived.codec == "residual2" and len(derived) == len(ids)
        assert derived.codebook.n_trained == n_full - n_full // 8  # the source's sample up front, not the first batch
        assert derived.n_vectors == sum((p.shape[0] + 1) // 2 for p in pages)
        assert derived.pruner_config["name"] == "ratio"
        assert top_ids(derived, queries[:2], k=1)[0]
        n_lean = derived.n_vectors
        again = derived.derive(tmp_path / "again", "none", dtype="float16")  # from a residual index: decoded
    with again:
        assert again.codec == "float16" and again.n_vectors == n_lean


def test_compact_keeps_results(tmp_path, data):
    ids, pages, imps, queries = data
    with cp.Index.create(tmp_path / "c", dim=DIM, dtype="residual2") as index:
        for lo in range(0, 160, 40):
            index.add(ids[lo : lo + 40], pages[lo : lo + 40], imps[lo : lo + 40])
        index.delete([f"p{i}" for i in range(0, 160, 3)])
        before = [[(h.id, h.score) for h in hs] for hs in index.search(queries, k=5)]
        res = index.compact()
        assert res["bytes_after"] < res["bytes_before"]
        after = [[(h.id, h.score) for h in hs] for hs in index.search(queries, k=5)]
        assert after == before
        assert index.verify()["docs"] == len(index)
        stored = {p.id: p.vectors for p in index.iter_pages()}
    cp.index.repack(tmp_path / "c", rerank=False)  # a copy: the same codebook (under a new name), the same codes
    with cp.Index.open(tmp_path / "c") as index:
        assert all(np.array_equal(p.vectors, stored[p.id]) for p in index.iter_pages()) and len(index) == len(stored)


KILLED = textwrap.dedent(
    """
    import sys, numpy as np, colprune as cp
    path = sys.argv[1]
    index = cp.Index.create(path, dim=16, dtype="residual2")
    i = 0
    while True:
        rng = np.random.default_rng(i)
        index.add([f"d{i}", f"d{i + 1}"], [rng.standard_normal((30, 16)).astype(np.float32) for _ in range(2)])
        if i % 6 == 4:
            index.compact(retrain=True)
        i += 2
        print(i, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_reopen_after_kill(tmp_path):
    path = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(6):
            assert proc.stdout.readline(), "the writer died on its own"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with cp.Index.open(path, mode="a") as index:  # whole commits only; a new writer collects what was left
        n = len(index)
        assert n >= 12 and n % 2 == 0 and index.verify()["docs"] == n
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CodebookDriftWarning)  # a page of ones is far from random pages
            index.add(["after"], [np.ones((3, 16), np.float32)])
    names = set(os.listdir(path / L.CODEBOOKS))
    with cp.Index.open(path) as index:
        assert len(index) == n + 1 and index.codebook.name in names


def test_format_3_collections_stay_format_3(tmp_path):
    path = tmp_path / "v3"
    shutil.copytree(GOLDEN / "v3", path)
    with cp.Index.open(path, mode="a") as index:
        assert index.format_version == 3
        index.add(["new"], [np.ones((2, 8), np.float32)], [np.ones(2)])
        index.compact()
    with cp.Index.open(path) as index:
        assert index.format_version == 3 and "new" in index and index.verify()
        assert index.snapshot().manifest["format_version"] == 3
        for seg in index.snapshot().segments:
            assert int(seg.f.attrs["format_version"]) == 3
    assert json.loads((path / L.MARKER).read_text())["format_version"] == 3


def test_bad_arguments(tmp_path):
    with pytest.raises(cp.errors.InvalidInputError, match="multiple of 8"):
        cp.Index.create(tmp_path / "odd", dim=6, dtype="residual1")
    with cp.Index.create(tmp_path / "f", dim=8) as index:
        index.add(["a"], [np.ones((2, 8), np.float32)])
        with pytest.raises(cp.errors.InvalidInputError, match="retrain"):
            index.compact(retrain=True)
        with pytest.raises(cp.errors.InvalidInputError, match="nprobe"):
            index.search(np.ones((1, 8), np.float32), nprobe=2)


def test_cli_build_prune_info_verify_retrain(tmp_path, data, capsys):
    ids, pages, imps, queries = data
    npz = tmp_path / "pages.npz"
    off = np.r_[0, np.cumsum([p.shape[0] for p in pages[:60]])]
    np.savez(npz, vectors=np.concatenate(pages[:60]), offsets=off, importance=np.concatenate(imps[:60]),
             ids=np.array(ids[:60]))
    full, lean, built = tmp_path / "full", tmp_path / "lean", tmp_path / "built"
    assert main(["build", str(npz), "-o", str(built), "--codec", "residual4", "--pruner", "none", "-q"]) == 0
    assert main(["build", str(npz), "-o", str(full), "--pruner", "none", "-q"]) == 0
    assert main(["prune", str(full), str(lean), "--codec", "residual2", "--pruner", "ratio", "--ratio", "0.5", "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(lean)]) == 0
    out = capsys.readouterr().out
    assert "residual2" in out and "codebook" in out and "bytes/vector" in out and "amortised" in out
    assert main(["info", str(built), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codebook"]["nbits"] == 4 and info["bytes_per_vector"] == 2 + DIM // 2
    assert main(["verify", str(lean)]) == 0 and "ok, 60 pages" in capsys.readouterr().out
    assert main(["retrain", str(lean)]) == 0 and "codebook" in capsys.readouterr().out
    assert main(["compact", str(lean), "--retrain"]) == 0
    assert main(["retrain", str(full)]) == 2 and "only residual" in capsys.readouterr().err
    assert main(["verify", str(lean)]) == 0


def test_verify_reads_the_codebook_again(tmp_path):
    from fault_injection import RESIDUAL_CRAFTS, make_residual_reference

    path = str(tmp_path / "v")
    make_residual_reference(path)
    with cp.Index.open(path) as index:  # the codebook is read (and checked) at open, then damaged on disk
        damaged = RESIDUAL_CRAFTS["codebook byte flipped (not resealed)"](path)
        with pytest.raises(cp.errors.CorruptionError, match="does not match its checksum") as info:
            index.verify()
        assert damaged in str(info.value)


def test_a_full_disk_while_writing_the_codebook_leaves_the_last_commit(tmp_path, monkeypatch):
    import errno

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    page = np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32)
    with cp.Index.create(tmp_path / "full", dim=16, dtype="residual2") as index:
        with monkeypatch.context() as m:
            m.setattr(os, "pwrite", full)  # every byte HDF5 writes goes through os.pwrite (SegmentFile)
            with pytest.raises(cp.errors.WriteError, match="disk full writing codebook"):
                index.add(["a"], [page])
        assert len(index) == 0 and index.codebook is None
        assert not os.listdir(tmp_path / "full" / L.CODEBOOKS) and not os.listdir(tmp_path / "full" / L.TMP)
        index.add(["a"], [page])  # the same index writes again once there is room
        assert len(index) == 1 and index.codebook is not None
