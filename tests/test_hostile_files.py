"""Hostile files, checksums and all: the reader refuses what it cannot trust before reading it, names the file,
never waits on a FIFO, never follows a link inside a collection, never allocates what a small file declares,
and checks what no checksum vouches for (ids unique across segments, filter columns, summaries, the writer's
rules). The crafts are ``tests/fault_injection.py``'s; ``test_fuzz.py`` runs them all through a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from conftest import GOLDEN
from fault_injection import (
    CRAFTS,
    RESIDUAL_CRAFTS,
    VALID_CRAFTS,
    copy_of,
    craft,
    make_reference,
    make_residual_reference,
)

import colprune as cp
from colprune.errors import CorruptionError, FormatError
from colprune.index import files as F
from colprune.index import layout as L

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and links need POSIX")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> str:
    ref = str(tmp_path_factory.mktemp("hostile") / "ref")
    make_reference(ref)
    return ref


@pytest.fixture
def crafted(reference, tmp_path):
    """``crafted(name)``: a fresh copy of the reference with craft ``name`` applied; returns its path."""
    def make(name: str) -> str:
        path = copy_of(reference, str(tmp_path / "c"))
        skipped = craft(path, name)
        if skipped:
            pytest.skip(skipped)
        return path

    return make


@pytest.fixture
def deadline():
    """A blocking open fails the test after 20 s (SIGALRM interrupts it) instead of hanging the run."""
    def on_alarm(signum, frame):
        raise TimeoutError("blocked for 20 s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def read_all(path: str) -> None:
    """Everything a reader does: open, ids, every page, a filtered search, verify."""
    with cp.Index.open(path) as ix:
        ix.ids  # noqa: B018
        list(ix.iter_pages())
        ix.search(np.ones((2, 16), np.float32), k=3, where={"src": "f1.pdf"})
        ix.verify()


# -- files that are not regular files --------------------------------------------------------

@pytest.mark.parametrize("target", ["segment", "deletion file", "manifest", "next manifest"])
@pytest.mark.parametrize("kind", ["is a FIFO", "is device 1:5", "links to /etc/passwd", "links to copy outside",
                                  "links to itself"])
def test_a_file_that_is_not_regular_is_refused_naming_it(crafted, deadline, target, kind):
    path = crafted(f"{target} {kind}")
    with pytest.raises(CorruptionError) as info:
        cp.Index.open(path)
    what = {"is a FIFO": "FIFO", "is device 1:5": "character device"}.get(kind, "symbolic link")
    assert what in str(info.value) and path in str(info.value)


def test_a_segment_linked_to_etc_passwd_never_reaches_hdf5(crafted, monkeypatch):
    opened: list[str] = []
    real = h5py.File

    def spy(name, *args, **kw):
        opened.append(os.path.realpath(name))
        return real(name, *args, **kw)

    monkeypatch.setattr(F.h5py, "File", spy)
    path = crafted("segment links to /etc/passwd")
    with pytest.raises(CorruptionError, match="symbolic link"):
        cp.Index.open(path)
    assert "/etc/passwd" not in opened


@pytest.mark.parametrize("sub", [L.SEGMENTS, L.MANIFESTS, L.DELETES])
def test_a_folder_linked_elsewhere_is_refused(crafted, sub):
    with pytest.raises(CorruptionError, match=f"{sub} is a symbolic link"):
        cp.Index.open(crafted(f"{sub}/ links to a copy outside"))


def test_the_writer_lock_never_follows_a_link(reference, tmp_path):
    path = copy_of(reference, str(tmp_path / "c"))
    target = tmp_path / "created-outside"
    os.unlink(os.path.join(path, L.LOCK))
    os.symlink(target, os.path.join(path, L.LOCK))
    with pytest.raises(CorruptionError, match="symbolic link"):
        cp.Index.open(path, mode="a")
    assert not target.exists()


@pytest.mark.parametrize("name", ["hard docs/loop -> /", "hard filters/f0/up -> filters", "hard docs/alias -> offsets"])
def test_hard_link_cycles_and_aliases_are_refused(crafted, deadline, name):
    with pytest.raises(FormatError, match="second link"):
        cp.Index.open(crafted(name))


# -- memory bombs ----------------------------------------------------------------------------

BOMB_READER = textwrap.dedent("""
    import json, os, resource, sys
    import colprune as cp
    from colprune.errors import ColpruneError
    vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
    for path in sys.argv[1:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with cp.Index.open(path) as ix:
                ix.ids, list(ix.iter_pages()), ix.verify()
            out = "read"
        except ColpruneError as e:
            out = type(e).__name__ + ": " + str(e)
        except MemoryError as e:
            out = "MemoryError: " + str(e)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"path": path, "out": out, "grew_mb": grew}), flush=True)
""")


def test_memory_bombs_are_refused_before_allocating(reference, tmp_path):
    """3 GiB declared by files of a few MB (never written, gzip bombs, huge counts): refused unread, in a process
    whose address space is capped 512 MiB above what its imports took."""
    names = ["bomb docs/id_bytes 3 GiB chunked", "bomb docs/metadata_bytes 3 GiB gzip-bomb",
             "bomb summary/codes 3 GiB contiguous", "bomb filters/f0/num 3 GiB lzf", "bomb docs/extra 3 GiB chunked",
             "bomb filters/f1/dict_bytes 1 GiB shuffle-gzip-bomb", "bomb counts 400M docs gzip"]
    paths = []
    for i, name in enumerate(names):
        paths.append(copy_of(reference, str(tmp_path / f"b{i}")))
        craft(paths[-1], name)
        assert sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(paths[-1]) for f in fs) < 16 << 20
    done = subprocess.run([sys.executable, "-c", BOMB_READER, *paths], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(names)
    for name, r in zip(names, results):
        assert r["out"].startswith("CorruptionError"), (name, r)
        assert "MemoryError" not in r["out"] and r["grew_mb"] < 100, (name, r)


def _legacy_bomb(path: str, how: str) -> None:
    """A version 2 file whose commit record claims 10^8 documents, its resizable datasets stretched to match:
    never written (``chunked``), or each chunk a deflated run of zeros (``gzip``)."""
    n = 10**8
    with h5py.File(path, "r+") as f:
        f["commit"][...] = [n, n]
        for name in ("offsets", "docs/id_offsets", "docs/metadata_offsets"):
            del f[name]
            ds = f.create_dataset(name, (n + 1,), np.int64, chunks=(1 << 20,), compression="gzip" if how == "gzip" else None)
            if how == "gzip":
                import zlib

                chunk = zlib.compress(bytes(8 << 20), 9)
                for start in range(0, n + 1, 1 << 20):
                    ds.id.write_direct_chunk((start,), chunk)
        for name in ("vectors", "positions", "importance", "patch_mask", "docs/n_original", "docs/grid"):
            f[name].resize(n, axis=0)


@pytest.mark.parametrize("how", ["chunked", "gzip"])
def test_a_legacy_file_claiming_more_than_it_stores_is_refused_unread(tmp_path, how):
    import shutil

    path = str(tmp_path / "v2.h5")
    shutil.copyfile(GOLDEN / "v2.h5", path)
    _legacy_bomb(path, how)
    assert os.path.getsize(path) < 16 << 20
    done = subprocess.run([sys.executable, "-c", BOMB_READER, path], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    assert r["out"].startswith("CorruptionError") and ("stores" in r["out"] or "filtered" in r["out"]), r
    assert r["grew_mb"] < 100, r


# -- manifests that lie ----------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "manifest deletes named '..'", "manifest segments.0.n_docs = 1e999", "manifest segments.0.n_docs = \"12\"",
    "manifest without segments.0.checksum", "manifest nested 100,000 deep", "manifest pruner params nested 100,000 deep",
    "manifest segments.0 = null", "manifest dim = 1099511627776", "manifest 2 GiB (sparse)", "manifest a list",
    "manifest signals = [\"a/b\"]", "manifest deletion file named twice", "marker nested 2,000 deep"])
def test_a_lying_manifest_is_refused_naming_it(crafted, name):
    path = crafted(name)
    with pytest.raises(FormatError) as info:
        cp.Index.open(path)
    assert isinstance(info.value, CorruptionError) or "COLPRUNE" in str(info.value) or L.MARKER in str(info.value)
    assert path in str(info.value)


# -- what no checksum vouches for ------------------------------------------------------------

def test_a_segment_listed_twice_is_refused_at_open(crafted):
    with pytest.raises(CorruptionError, match="same page ids"):
        cp.Index.open(crafted("segment listed twice (copy at the end)"))


def test_ids_live_in_two_segments_are_refused_where_ids_are_read(crafted):
    path = crafted("segment overlapping another's live ids")
    for use in (lambda ix: ix.ids, lambda ix: "p1-3" in ix, lambda ix: ix.search(np.ones((2, 16), np.float32), k=40),
                lambda ix: ix.get("new-0"), lambda ix: ix.verify()):
        with cp.Index.open(path) as ix, pytest.raises(CorruptionError, match="'p1-3' is live in"):
            use(ix)
    with cp.Index.open(path, mode="a") as ix, pytest.raises(CorruptionError, match="'p1-3' is live in"):
        ix.delete(["p1-3"])


@pytest.mark.parametrize("name", ["filter page num all 3", "filter src codes rotated", "filter group removed",
                                  "filter field renamed to an unknown field", "filter src dictionary one more"])
def test_filter_columns_that_disagree_with_the_metadata_fail_verify(crafted, name):
    with cp.Index.open(crafted(name)) as ix, pytest.raises(CorruptionError, match="filter column"):
        ix.verify()


@pytest.mark.parametrize("name", ["summary codes int16", "summary codes float32", "summary scales float64",
                                  "summary codes wide", "summary_centroids attr 3"])
def test_summaries_of_another_dtype_or_shape_are_refused_at_open(crafted, name):
    with pytest.raises(CorruptionError, match="summar"):
        cp.Index.open(crafted(name))


@pytest.mark.parametrize("name, where", [("id with LF", "ids"), ("id with NUL", "ids"), ("id with 1,025 bytes", "open"),
                                         ("metadata a list", "pages"), ("metadata NaN", "pages")])
def test_ids_and_metadata_follow_the_writers_rules(crafted, name, where):
    path = crafted(name)
    with pytest.raises(CorruptionError):
        with cp.Index.open(path) as ix:
            ix.ids if where == "ids" else list(ix.iter_pages())  # noqa: B018


def test_compacting_non_object_metadata_is_a_corruption_error(crafted):
    with cp.Index.open(crafted("metadata a list"), mode="a") as ix:
        ix.delete(["p0-1"])
        with pytest.raises(CorruptionError, match="not an object"):
            ix.compact()


@pytest.mark.parametrize("name", sorted(VALID_CRAFTS - {"segment re-adding a deleted page"}))
def test_valid_crafts_read_and_verify(crafted, name):
    read_all(crafted(name))


def test_the_reference_reads_and_verifies(reference):
    read_all(reference)


@pytest.mark.parametrize("name", ["v1.h5", "v2.h5", "v2-int8.h5", "v2-binary.h5", "v2-merged.h5"])
def test_golden_files_of_old_versions_verify(name):
    with cp.Index.open(GOLDEN / name) as ix:
        assert ix.verify()["docs"] == len(ix) > 0


# -- the bounds themselves -------------------------------------------------------------------

def test_json_depth_counts_brackets_outside_strings():
    assert F.json_depth(b'{"a": [1, {"b": "[[[\\"["}]}', 3)
    assert not F.json_depth(b'{"a": [1, {"b": "[[[\\"["}]}', 2)
    assert not F.json_depth(b"[" * 100_000 + b"]" * 100_000, 100)
    assert F.json_depth(json.dumps({"x": "[" * 10_000}).encode(), 1)


def test_read_regular_refuses_more_than_its_bound(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    assert F.read_regular(str(p), 100) == b"x" * 100
    with pytest.raises(CorruptionError, match="more than"):
        F.read_regular(str(p), 99)


def test_every_craft_is_known_to_the_fuzz_suite():
    assert len(CRAFTS) >= 250


# -- residual collections: codebooks, codes and inverted lists ------------------------------------

@pytest.fixture(scope="module")
def residual_reference(tmp_path_factory) -> str:
    ref = str(tmp_path_factory.mktemp("hostile-residual") / "ref")
    make_residual_reference(ref)
    return ref


def read_residual(path: str) -> None:
    """Everything a reader of a residual collection does: open, every page, exact and candidates search, verify."""
    q = np.ones((2, 16), np.float32)
    with cp.Index.open(path) as ix:
        list(ix.iter_pages())
        ix.search(q, k=3, where={"src": "f1.pdf"})
        ix.search(q, k=3, candidates=5)
        ix.verify()


def test_the_residual_reference_reads_cleanly(residual_reference, tmp_path):
    read_residual(copy_of(residual_reference, str(tmp_path / "c")))


@pytest.mark.parametrize("name", sorted(RESIDUAL_CRAFTS))
def test_a_damaged_codebook_codes_or_lists_is_refused_naming_the_file(residual_reference, tmp_path, deadline, name):
    path = copy_of(residual_reference, str(tmp_path / "c"))
    damaged = RESIDUAL_CRAFTS[name](path)
    with pytest.raises((CorruptionError, FormatError)) as info:
        read_residual(path)
    assert damaged in str(info.value), str(info.value)
