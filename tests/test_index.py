import json

import h5py
import numpy as np
import pytest
import torch
from conftest import pages
from numpy.testing import assert_allclose, assert_array_equal

import colprune as cp
from colprune.errors import CorruptionError, DuplicateIdError, FormatError, InvalidInputError
from colprune.index import layout
from colprune.kernels import maxsim_reference, topk_reference


@pytest.fixture
def built(tmp_path, rng):
    ids, embs, imps = pages(rng, 40)
    path = tmp_path / "pages.h5"
    with cp.Index.create(path, dim=16, dtype="float32") as index:
        index.add(ids, embs, importance=imps, pruner=cp.pruning.AdaptiveThreshold(k=-0.25),
                  metadata=[{"n": i, "name": f"p{i}"} for i in range(40)])
    return path, ids, embs, imps


def test_round_trip_and_public_api(built):
    path, ids, embs, imps = built
    index = cp.Index.open(path)
    assert len(index) == 40 and index.ids == ids and "doc-7" in index and "nope" not in index
    page = index.get("doc-7")
    pruned = cp.pruning.AdaptiveThreshold(k=-0.25).prune(embs[7], imps[7])
    assert_array_equal(page.positions, pruned.positions)
    assert_array_equal(page.vectors, embs[7][pruned.positions])
    assert_array_equal(page.importance, imps[7][pruned.positions])
    assert page.n_original == embs[7].shape[0] and page.metadata == {"n": 7, "name": "p7"} and page.grid is None
    assert index.pruner == cp.pruning.AdaptiveThreshold(k=-0.25)
    assert index.attrs["format"] == "colprune-index" and index.attrs["format_version"] == layout.FORMAT_VERSION
    info = index.info()
    assert info["docs"] == 40 and info["vectors"] == index.n_vectors < info["original_vectors"]
    assert [p.id for p in index] == ids
    with pytest.raises(KeyError, match="nope"):
        index.get("nope")
    index.close()


def test_search_equals_brute_force(built, rng):
    path, ids, embs, imps = built
    index = cp.Index.open(path)
    vectors, offsets = index.load()
    qs = [rng.standard_normal((m, 16)).astype(np.float32) for m in (3, 8)]
    ref = maxsim_reference(qs, vectors, offsets)
    assert_allclose(index.scores(qs), ref, rtol=1e-5, atol=1e-5)
    hits = index.search(qs, k=5)
    ridx, rval = topk_reference(index.scores(qs), 5)
    for q in range(2):
        assert [h.id for h in hits[q]] == [ids[i] for i in ridx[q]]
        assert_allclose([h.score for h in hits[q]], ref[q][ridx[q]], rtol=1e-5)
    single = index.search(qs[0], k=3)
    assert isinstance(single, list) and single[0] == (hits[0][0].id, hits[0][0].score)
    assert len(index.search(torch.from_numpy(qs[1]), k=1000)) == 40  # k larger than the index


def test_float16_storage_search_matches_reference(tmp_path, rng):
    ids, embs, imps = pages(rng, 25)
    with cp.Index.create(tmp_path / "h.h5", dim=16) as index:
        index.add(ids, embs, importance=imps)
        vectors, offsets = index.load()
        assert vectors.dtype == np.float16
        q = rng.standard_normal((4, 16)).astype(np.float32)
        assert_allclose(index.scores(q), maxsim_reference([q], vectors, offsets), rtol=1e-5, atol=1e-4)


def test_empty_index_search(tmp_path):
    with cp.Index.create(tmp_path / "e.h5", dim=8) as index:
        assert index.search(np.ones((2, 8), np.float32)) == []
        assert index.search([np.ones((2, 8), np.float32)] * 2) == [[], []]
        assert index.ids == [] and len(index) == 0 and index.info()["keep_ratio"] is None


def test_append_after_reopen_and_read_only(built, rng):
    path, ids, _, _ = built
    with pytest.raises(PermissionError, match="read-only"):
        cp.Index.open(path).add(["x"], [np.ones((2, 16))], [np.ones(2)])
    with cp.Index.open(path, mode="a") as index:
        more_ids, embs, imps = pages(rng, 5)
        index.add([f"new-{i}" for i in range(5)], embs, imps)  # the stored pruner is reused
        assert len(index) == 45
    assert cp.Index.open(path).ids[-5:] == [f"new-{i}" for i in range(5)]


def test_other_pruner_is_refused_on_a_built_index(built):
    path, *_ = built
    with cp.Index.open(path, mode="a") as index:
        with pytest.raises(InvalidInputError, match="derive"):
            index.add(["x"], [np.ones((2, 16))], [np.ones(2)], pruner=cp.TopRatio(0.5))


def _unchanged(path, n):
    index = cp.Index.open(path)
    assert len(index) == n
    index.get(index.ids[-1])
    index.close()


@pytest.mark.parametrize(
    "ids, embs, imps, kwargs, err, match",
    [
        (["doc-3"], [np.ones((2, 16))], [np.ones(2)], {}, DuplicateIdError, "'doc-3' is already"),
        (["a", "a"], [np.ones((2, 16))] * 2, [np.ones(2)] * 2, {}, DuplicateIdError, "twice"),
        ([""], [np.ones((2, 16))], [np.ones(2)], {}, InvalidInputError, "empty document id"),
        ([5], [np.ones((2, 16))], [np.ones(2)], {}, InvalidInputError, "strings"),
        (["a", "b"], [np.ones((2, 16)), np.full((2, 16), np.nan)], [np.ones(2)] * 2, {}, InvalidInputError, "'b'.*NaN"),
        (["a"], [np.ones((2, 8))], [np.ones(2)], {}, InvalidInputError, "'a'.*dim 8, expected 16"),
        (["a"], [np.ones((0, 16))], [np.ones(0)], {}, InvalidInputError, "'a'.*empty page"),
        (["a"], [np.ones((3, 16))], [np.ones(2)], {}, InvalidInputError, "'a'.*importance has shape"),
        (["a"], [np.ones((3, 16))], [np.array([1, np.inf, 0])], {}, InvalidInputError, "'a'.*importance contains"),
        (["a"], [np.ones((3, 16))], None, {}, InvalidInputError, "'a'.*needs importance"),
        (["a"], [np.ones((3, 16))], [np.ones(3)], {"metadata": [{"x": object()}]}, InvalidInputError, "'a'.*JSON"),
        (["a"], [np.ones((3, 16))], [np.ones(3)], {"metadata": [{"x": float("nan")}]}, InvalidInputError, "'a'.*JSON"),
        (["a"], [np.full((3, 16), 1e6)], [np.ones(3)], {}, InvalidInputError, "'a'.*overflow"),
        (["a"], [np.ones((4, 16))], [np.ones(4)], {"grids": [(3, 1)]}, InvalidInputError, "'a'.*grid 3x1"),
        (["a"], [np.ones((4, 16))], [np.ones(4)], {"patch_mask": [np.ones(3, bool)]}, InvalidInputError, "'a'.*patch_mask"),
        (["a", "b"], [np.ones((4, 16))], [np.ones(4)], {}, InvalidInputError, "embeddings has 1 entries for 2 ids"),
    ],
)
def test_bad_input_is_named_and_leaves_the_index_unchanged(tmp_path, rng, ids, embs, imps, kwargs, err, match):
    path = tmp_path / "f16.h5"
    seed_ids, seed_embs, seed_imps = pages(rng, 5)
    with cp.Index.create(path, dim=16) as index:
        index.add(seed_ids, seed_embs, seed_imps, pruner="adaptive")
        with pytest.raises(err, match=match):
            index.add(ids, embs, imps, **kwargs)
        assert len(index) == 5
    _unchanged(path, 5)


def test_query_validation(built):
    index = cp.Index.open(built[0])
    with pytest.raises(ValueError, match="dim 8 does not match the index dim 16"):
        index.search(np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((2, 16), np.nan, np.float32))


def test_grid_and_patch_mask_are_stored(tmp_path, rng):
    emb = rng.standard_normal((7, 16)).astype(np.float32)
    mask = np.array([False, True, True, True, True, True, True])
    with cp.Index.create(tmp_path / "g.h5", dim=16) as index:
        index.add(["p"], [emb], [np.arange(7.0)], pruner=cp.TopRatio(0.5), patch_mask=[mask], grids=[(2, 3)])
        page = index.get("p")
    assert page.grid == (2, 3)
    assert_array_equal(page.positions, [0, 4, 5, 6])
    assert_array_equal(page.patch_mask, [False, True, True, True])


def test_derive_equals_direct_pruning(tmp_path, rng):
    ids, embs, imps = pages(rng, 30)
    mask = [np.r_[False, np.ones(e.shape[0] - 1, bool)] for e in embs]
    full_path = tmp_path / "full.h5"
    with cp.Index.create(full_path, dim=16, dtype="float32") as full:
        full.add(ids, embs, imps, pruner="none", patch_mask=mask, metadata=[{"i": i} for i in range(30)])
        assert full.info()["keep_ratio"] == 1.0
        derived = full.derive(tmp_path / "adaptive.h5", "adaptive", k=0.0)
    direct = cp.AdaptiveThreshold(0.0)
    for i, doc_id in enumerate(ids):
        want = direct.prune(embs[i], imps[i], patch_mask=mask[i])
        got = derived.get(doc_id)
        assert_array_equal(got.positions, want.positions)
        assert_array_equal(got.vectors, want.vectors)
        assert got.n_original == embs[i].shape[0] and got.metadata == {"i": i}
    # derive again from the derived index: positions compose
    twice = derived.derive(tmp_path / "twice.h5", "ratio", ratio=0.5)
    p1, p2 = derived.get("doc-3"), twice.get("doc-3")
    assert set(p2.positions) <= set(p1.positions) and p2.n_original == embs[3].shape[0]
    assert twice.pruner_config["derived_from"]["name"] == "adaptive"


def test_derive_needs_importance(tmp_path, rng):
    ids, embs, _ = pages(rng, 3)
    with cp.Index.create(tmp_path / "noimp.h5", dim=16) as full:
        full.add(ids, embs)  # no importance
        with pytest.raises(InvalidInputError, match="without importance"):
            full.derive(tmp_path / "x.h5", "adaptive")
        assert len(full.derive(tmp_path / "r.h5", "random", ratio=0.5)) == 3


def test_create_refuses_existing_file(built):
    with pytest.raises(FileExistsError, match="overwrite"):
        cp.Index.create(built[0], dim=16)


def test_missing_foreign_truncated_and_newer_files(tmp_path, built):
    from conftest import GOLDEN

    with pytest.raises(FileNotFoundError):
        cp.Index.open(tmp_path / "absent.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(FormatError, match="not an HDF5 file"):
        cp.Index.open(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(FormatError, match="not a colprune index"):
        cp.Index.open(foreign)
    (tmp_path / "folder").mkdir()
    with pytest.raises(FormatError, match="not a colprune collection"):
        cp.Index.open(tmp_path / "folder")
    data = (GOLDEN / "v2.h5").read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="truncated"):
        cp.Index.open(truncated)
    marker = built[0] / layout.MARKER
    marker.write_text(json.dumps({"format": layout.COLLECTION_FORMAT, "format_version": layout.FORMAT_VERSION + 1}))
    with pytest.raises(FormatError, match="newer.*pip install -U colprune"):
        cp.Index.open(built[0])


def test_leftovers_of_an_interrupted_write_are_ignored_then_removed(built, rng):
    path, ids, _, _ = built
    # what a killed writer leaves: a half-written segment in tmp/, a sealed segment and a
    # deletion file no manifest names, and a manifest that never got its rename
    (path / layout.TMP / "seg-half.h5").write_bytes(b"\x89HDF partial")
    (path / layout.TMP / "w-manifest").write_bytes(b"{")
    orphan = next((path / layout.SEGMENTS).iterdir())
    (path / layout.SEGMENTS / "seg-orphan.h5").write_bytes(orphan.read_bytes())
    index = cp.Index.open(path)
    assert len(index) == 40 and index.ids == ids and index.version == 1
    index.close()
    with cp.Index.open(path, mode="a") as index:
        assert not list((path / layout.TMP).iterdir())  # the writer clears tmp/ under its lock
        _, embs, imps = pages(rng, 1)
        index.add(["ghost"], embs, imps)
        assert index.get("ghost").n_original == embs[0].shape[0] and len(index) == 41
    assert not (path / layout.SEGMENTS / "seg-orphan.h5").exists()  # garbage-collected after the commit


def test_old_versions_open_read_only(tmp_path):
    from conftest import GOLDEN

    old = tmp_path / "v1.h5"
    old.write_bytes((GOLDEN / "v1.h5").read_bytes())
    with pytest.raises(FormatError, match="colprune upgrade"):
        cp.Index.open(old, mode="a")
    with cp.Index.open(old) as index:
        index.derive(tmp_path / "new.h5", "none")
    cp.Index.upgrade(old, tmp_path / "up").close()
    for p in ("new.h5", "up"):
        with cp.Index.open(tmp_path / p, mode="a") as index:
            assert index.format_version == layout.FORMAT_VERSION and len(index) == 4
            assert index.ids == cp.Index.open(old).ids


def test_damaged_manifest_is_reported(built):
    path = built[0]
    manifest = next((path / layout.MANIFESTS).iterdir())
    raw = manifest.read_bytes()
    manifest.write_bytes(raw.replace(b'"n_docs": 40', b'"n_docs": 41'))
    with pytest.raises(CorruptionError, match="checksum"):
        cp.Index.open(path)


def test_every_object_carries_encoding_attributes(built):
    for seg in (built[0] / layout.SEGMENTS).iterdir():
        with h5py.File(seg) as f:
            names = ["/"]
            f.visit(names.append)
            for name in names:
                assert f[name].attrs["encoding-type"], name
                assert f[name].attrs["encoding-version"] == str(layout.FORMAT_VERSION), name
    with cp.Index.open(built[0]) as index:
        assert index.pruner_config == {"name": "adaptive", "params": {"k": -0.25}}


def test_signals_are_stored_and_drive_derived_pruning(tmp_path, rng):
    ids, embs, imps = pages(rng, 12, lo=4)
    sigs = [{"cls": imp, "norm": np.linalg.norm(e, axis=1)} for e, imp in zip(embs, imps)]
    with cp.Index.create(tmp_path / "full.h5", dim=16, dtype="float32", signals=["cls", "norm"]) as full:
        full.add(ids, embs, imps, signals=sigs)
        assert full.signal_names == ["cls", "norm"]
        assert_array_equal(full.get("doc-2").signals["norm"], sigs[2]["norm"].astype(np.float32))
        by_norm = full.derive(tmp_path / "norm.h5", "ratio", ratio=0.5, signal="norm")
        blend = full.derive(tmp_path / "blend.h5", "ratio", ratio=0.5, signal={"cls": 0.5, "norm": 0.5})
        assert blend.pruner_config["signal"] == {"cls": 0.5, "norm": 0.5}
        s, n = sigs[4]["cls"], sigs[4]["norm"]
        mix = 0.5 * (s - s.min()) / (s.max() - s.min()) + 0.5 * (n - n.min()) / (n.max() - n.min())
        assert_array_equal(blend.get("doc-4").positions, cp.TopRatio(0.5).prune(embs[4], mix).positions)
        blend.close()
        with pytest.raises(InvalidInputError, match="no signal"):
            full.derive(tmp_path / "x.h5", "ratio", signal="nope")
        with pytest.raises(InvalidInputError, match="signals must have exactly"):
            full.add(["z"], [embs[0]], [imps[0]], signals=[{"cls": imps[0]}])
        with pytest.raises(InvalidInputError, match="signal 'norm' must be"):
            full.add(["z"], [embs[0]], [imps[0]], signals=[{"cls": imps[0], "norm": imps[0][:-1]}])
    with by_norm:
        assert by_norm.pruner_config == {"name": "ratio", "params": {"ratio": 0.5}, "signal": "norm"}
        for i, doc_id in enumerate(ids):
            want = cp.TopRatio(0.5).prune(embs[i], sigs[i]["norm"])
            got = by_norm.get(doc_id)
            assert_array_equal(got.positions, want.positions)
            assert_array_equal(got.signals["cls"], imps[i][want.positions].astype(np.float32))
            assert_allclose(got.importance, sigs[i]["norm"][want.positions], rtol=1e-6)
