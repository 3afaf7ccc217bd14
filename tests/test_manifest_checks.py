"""Manifest validation is written as explicit raises, not ``assert``: the format's rules (above all the
segment and shard names, which keep a manifest from naming files outside its collection) hold under
``python -O`` too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from colprune.distributed import manifest as SM
from colprune.errors import CorruptionError, FormatError
from colprune.index import layout as L
from colprune.index import manifest as M


def _collection(root, **changes) -> str:
    """A collection folder whose manifest (version 0) is a valid one with ``changes`` applied."""
    root = str(root)
    for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.TMP):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    with open(os.path.join(root, L.MARKER), "w") as fh:
        json.dump({"format": L.COLLECTION_FORMAT, "format_version": L.FORMAT_VERSION}, fh)
    body = M.new_manifest(8, "float16", encoder=None, rerank=False, signals=[], merged=False, summary_centroids=0)
    body["segments"] = [{"name": "seg-a.h5", "n_docs": 2, "n_vectors": 5, "checksum": "0" * 16}]
    body.update(changes)
    M.write_manifest(root, body)  # a valid checksum: only the rules can refuse it
    if body["version"] != 0:  # filed as version 0 all the same
        mdir = os.path.join(root, L.MANIFESTS)
        os.replace(os.path.join(mdir, L.manifest_name(body["version"])), os.path.join(mdir, L.manifest_name(0)))
    return root


def _sharded(root, shards) -> str:
    root = str(root)
    os.makedirs(root, exist_ok=True)
    body = SM.new_manifest(4, {"dim": 8, "codec": "float16"})
    body["shards"] = shards
    with open(os.path.join(root, SM.MANIFEST), "w") as fh:
        json.dump(body, fh)
    return root


def _run_optimized(code: str) -> str:
    """Run ``code`` under ``python -O`` (asserts stripped); returns its stdout."""
    done = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


SEG = {"name": "seg-a.h5", "n_docs": 2, "n_vectors": 5, "checksum": "0" * 16}


@pytest.mark.parametrize("changes, why", [
    ({"segments": [dict(SEG, name="../../outside.h5")]}, "segment name"),
    ({"segments": [dict(SEG, name="/etc/passwd.h5")]}, "segment name"),
    ({"segments": [dict(SEG, name="seg-a.txt")]}, "segment name"),
    ({"segments": [dict(SEG, name=7)]}, "segment name"),
    ({"segments": [dict(SEG, deletes={"name": "../x.del", "count": 1, "checksum": "0"})]}, "deletion file name"),
    ({"segments": [dict(SEG, deletes={"name": "x.del", "count": 3, "checksum": "0"})]}, "rows deleted"),
    ({"segments": [dict(SEG, n_docs=-1)]}, "negative"),
    ({"segments": [SEG, SEG]}, "named twice"),
    ({"format": "something-else"}, "format"),
    ({"version": 4}, "version"),
    ({"dim": 0}, "dim"),
    ({"codec": "int4"}, "codec"),
    ({"skipped": []}, "skipped"),
    ({"segments": [{"name": "seg-a.h5"}]}, "KeyError"),
    # numbers typed and in range, names plain, required keys present (each was a raw error or accepted)
    ({"segments": [dict(SEG, deletes={"name": "..", "count": 0, "checksum": "0" * 16})]}, "deletion file name '..'"),
    ({"segments": [dict(SEG, deletes={"name": ".", "count": 0, "checksum": "0" * 16})]}, "deletion file name '.'"),
    ({"segments": [dict(SEG, n_docs=float("inf"))]}, "counts inf docs"),
    ({"segments": [dict(SEG, n_docs="2")]}, "not integers"),
    ({"segments": [dict(SEG, n_docs=True)]}, "not integers"),
    ({"segments": [dict(SEG, n_vectors=2**70)]}, "not integers"),
    ({"segments": [dict(SEG, n_docs=6)]}, "every page holds at least one"),
    ({"segments": [{k: v for k, v in SEG.items() if k != "checksum"}]}, "KeyError: 'checksum'"),
    ({"segments": [dict(SEG, checksum="xyz")]}, "checksum 'xyz'"),
    ({"segments": [dict(SEG, name="x" * 300 + ".h5")]}, "segment name"),
    ({"segments": [None]}, "not an object"),
    ({"dim": float("inf")}, "dim inf"),
    ({"dim": 2**40}, "dim"),
    ({"dim": 8.0}, "dim 8.0"),
    ({"version": 0.0}, "version"),
    ({"format_version": "3"}, "version '3'"),
    ({"rerank": "yes"}, "'rerank'"),
    ({"signals": ["a/b"]}, "signals"),
    ({"signals": "cls"}, "signals"),
    ({"pruner": {"name": "none", "params": [1]}}, "pruner record"),
    ({"skipped": {"a.pdf": 3}}, "skipped"),
])
def test_a_manifest_that_breaks_a_rule_is_refused_naming_the_file(tmp_path, changes, why):
    root = _collection(tmp_path / "c", **changes)
    with pytest.raises(CorruptionError, match=why) as info:
        M.read_manifest(root)
    assert os.path.join(root, L.MANIFESTS, L.manifest_name(0)) in str(info.value)


def test_the_fixture_manifest_is_valid(tmp_path):
    # so that each case above fails on its one change
    root = _collection(tmp_path / "c")
    assert M.read_manifest(root)["segments"][0]["name"] == "seg-a.h5"


def test_the_segment_name_check_holds_under_python_O(tmp_path):
    root = _collection(tmp_path / "c", segments=[dict(SEG, name="../../outside.h5")])
    out = _run_optimized(f"""
import sys
assert False, "unreachable"  # stripped by -O
print("optimize", sys.flags.optimize)
import colprune
from colprune.errors import CorruptionError
from colprune.index import manifest as M
for opener in (M.read_manifest, colprune.Index.open):
    try:
        opener({root!r})
    except CorruptionError as e:
        print("refused", type(e).__name__, e)
    else:
        print("accepted")
""")
    assert "optimize 1" in out
    lines = [line for line in out.splitlines() if line.startswith(("refused", "accepted"))]
    assert len(lines) == 2 and all(line.startswith("refused CorruptionError") for line in lines), out
    assert all("segment name '../../outside.h5'" in line and L.manifest_name(0) in line for line in lines), out


@pytest.mark.parametrize("shards, why", [
    ([{"name": "../shard-00000", "bucket": 0}], "shard"),
    ([{"name": "shard-00001", "bucket": 0}], "shard"),
    ([{"name": "shard-00009", "bucket": 9}], "shard"),
    ([{"name": "shard-00000", "bucket": 0}, {"name": "shard-00000", "bucket": 0}], "shard"),
])
def test_a_sharded_manifest_that_breaks_a_rule_is_refused(tmp_path, shards, why):
    root = _sharded(tmp_path / "s", shards)
    with pytest.raises(CorruptionError, match=why) as info:
        SM.read_manifest(root)
    assert os.path.join(root, SM.MANIFEST) in str(info.value)
    assert isinstance(info.value, FormatError)


def test_the_shard_name_check_holds_under_python_O(tmp_path):
    root = _sharded(tmp_path / "s", [{"name": "../../elsewhere", "bucket": 0}])
    out = _run_optimized(f"""
import sys
print("optimize", sys.flags.optimize)
from colprune.distributed import manifest as SM
from colprune.errors import CorruptionError
try:
    SM.read_manifest({root!r})
except CorruptionError as e:
    print("refused", e)
else:
    print("accepted")
""")
    assert "optimize 1" in out
    assert "refused" in out and "'../../elsewhere'" in out and SM.MANIFEST in out, out


def _raw_manifest(root, text: str) -> str:
    """A collection whose manifest version 0 is ``text`` verbatim."""
    root = _collection(root)
    with open(os.path.join(root, L.MANIFESTS, L.manifest_name(0)), "w") as fh:
        fh.write(text)
    return root


@pytest.mark.parametrize("text, why", [
    ("[" * 100_000 + "]" * 100_000, "nests deeper"),
    ('{"body": {"x": ' + "[" * 5_000 + "]" * 5_000 + '}, "checksum": "0"}', "nests deeper"),
    ('{"body": [], "checksum": "0"}', "not a"),
    ('{"checksum": "0"}', "not a"),
    ("[1]", "not a"),
    ("", "not valid JSON"),
    ('{"body": {"n": 1e999}, "checksum": "0"}', "does not match its checksum"),
])
def test_a_manifest_that_is_not_a_manifest_is_refused_before_its_rules(tmp_path, text, why):
    root = _raw_manifest(tmp_path / "c", text)
    with pytest.raises(CorruptionError, match=why) as info:
        M.read_manifest(root)
    assert L.manifest_name(0) in str(info.value)


def test_a_manifest_is_read_only_when_it_is_a_small_regular_file(tmp_path):
    root = _collection(tmp_path / "c")
    path = os.path.join(root, L.MANIFESTS, L.manifest_name(1))
    os.mkfifo(path)  # named like the next version: a reader must not wait on it
    with pytest.raises(CorruptionError, match="FIFO"):
        M.read_manifest(root)
    os.unlink(path)
    with open(path, "wb") as fh:
        fh.truncate(M.MAX_MANIFEST_BYTES + 1)  # sparse: nothing on disk
    with pytest.raises(CorruptionError, match="more than a manifest may hold"):
        M.read_manifest(root)
    os.unlink(path)
    os.symlink(os.path.join(root, L.MANIFESTS, L.manifest_name(0)), path)
    with pytest.raises(CorruptionError, match="symbolic link"):
        M.read_manifest(root)


def test_a_deletion_file_collected_under_a_reader_sends_it_to_the_newest_version(tmp_path, monkeypatch):
    """A fast writer can commit and collect past the version a reader just listed: a missing deletion
    file of an older version means "read the newest", not damage (found by bench/reliability.py)."""
    import numpy as np

    import colprune as cp
    from colprune.index import snapshot

    path = str(tmp_path / "c")
    with cp.Index.create(path, dim=4) as index:
        index.add([f"p{i}" for i in range(6)], [np.full((2, 4), i + 1, np.float32) for i in range(6)])
        index.delete(["p0"])
        old = M.latest_version(path)
        index.delete(["p1"])
    stale = M.read_manifest(path, old)
    real = M.read_manifest
    calls = []

    def first_the_stale_one(root, version=None):
        calls.append(version)
        return stale if len(calls) == 1 else real(root, version)

    for entry in stale["segments"]:
        if entry.get("deletes"):
            os.remove(os.path.join(path, L.DELETES, entry["deletes"]["name"]))  # collected by the writer
    monkeypatch.setattr(snapshot.M, "read_manifest", first_the_stale_one)
    with cp.Index.open(path) as index:
        assert sorted(index.ids) == [f"p{i}" for i in range(2, 6)]
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(CorruptionError, match="deletion file named by the manifest is missing"):
        snapshot.load_collection(path, old, [])  # that version asked for by name: damage


def test_a_segment_removed_while_it_is_opened_is_missing_not_damaged(tmp_path, monkeypatch):
    """Between the checked open of a segment and HDF5's, a writer's garbage collection may unlink it;
    that is FileNotFoundError (the reader retries with the newest version), not "not an HDF5 file"."""
    import numpy as np

    import colprune as cp
    from colprune.index import files

    path = str(tmp_path / "c")
    with cp.Index.create(path, dim=4) as index:
        index.add(["a"], [np.ones((2, 4), np.float32)])
    seg = next(os.scandir(os.path.join(path, L.SEGMENTS))).path
    real = files.h5py.File

    def collected_first(name, *args, **kwargs):
        os.remove(seg)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(files.h5py, "File", collected_first)
    with pytest.raises(FileNotFoundError):
        files.open_h5(seg)
