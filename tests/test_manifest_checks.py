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
