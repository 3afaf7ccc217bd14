"""Format 3 collections: deletes, upserts, compaction, filters, snapshots, locks, checksums.

Every change is compared with a plain oracle (a dict of live pages) and with brute-force
MaxSim over it.
"""

import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import colprune as cp
from colprune.errors import CorruptionError, DuplicateIdError, FormatError, InvalidInputError, LockedError
from colprune.index import layout
from colprune.kernels import maxsim_reference

DIM = 16


def page(i, dim=DIM):
    rng = np.random.default_rng(i)
    return rng.standard_normal((int(rng.integers(1, 30)), dim)).astype(np.float32)


def brute(oracle: dict, order: list, q: np.ndarray, k: int, where=None):
    ids = [i for i in order if where is None or where(oracle[i][1])]
    if not ids:
        return []
    vecs = [oracle[i][0].astype(np.float16).astype(np.float32) for i in ids]
    off = np.zeros(len(vecs) + 1, np.int64)
    np.cumsum([v.shape[0] for v in vecs], out=off[1:])
    s = maxsim_reference([q], np.concatenate(vecs), off)[0]
    order_ = sorted(range(len(ids)), key=lambda j: (-s[j], j))[:k]
    return [(ids[j], s[j]) for j in order_]


def check_against(index, oracle, order, rng, where=None, where_fn=None):
    assert len(index) == len(oracle) and index.ids == order
    for doc_id in rng.choice(order, size=min(3, len(order)), replace=False) if order else []:
        assert_array_equal(index.get(doc_id).vectors, oracle[doc_id][0].astype(np.float16))
    q = rng.standard_normal((5, DIM)).astype(np.float32)
    got = index.search(q, k=7, where=where)
    want = brute(oracle, order, q, 7, where_fn)
    assert [h.id for h in got] == [w[0] for w in want]
    assert_allclose([h.score for h in got], [w[1] for w in want], rtol=1e-4, atol=1e-4)
    for h in got:
        assert h.metadata == oracle[h.id][1]


def test_random_sequences_match_the_oracle(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "c"
    oracle, order, next_id = {}, [], 0
    index = cp.Index.create(path, dim=DIM)
    for step in range(40):
        op = rng.choice(["add", "add", "delete", "upsert", "compact", "reopen"])
        if op == "add" or not order:
            n = int(rng.integers(1, 6))
            ids = [f"d{next_id + j}" for j in range(n)]
            embs = [page(next_id + j) for j in range(n)]
            meta = [{"n": next_id + j, "par": ["even", "odd"][(next_id + j) % 2]} for j in range(n)]
            next_id += n
            index.add(ids, embs, metadata=meta)
            for i, e, m in zip(ids, embs, meta):
                oracle[i] = (e, m)
                order.append(i)
        elif op == "delete":
            gone = list(rng.choice(order, size=min(len(order), int(rng.integers(1, 4))), replace=False))
            assert index.delete(gone) == len(gone)
            for i in gone:
                del oracle[i]
                order.remove(i)
        elif op == "upsert":
            ids = list(rng.choice(order, size=min(len(order), 2), replace=False)) + [f"d{next_id}"]
            embs = [page(1000 + step * 3 + j) for j in range(len(ids))]
            meta = [{"n": -step, "par": "new"} for _ in ids]
            next_id += 1
            index.upsert(ids, embs, metadata=meta)
            for i, e, m in zip(ids, embs, meta):
                if i in oracle:
                    order.remove(i)
                oracle[i] = (e, m)
                order.append(i)
        elif op == "compact":
            index.compact()
            assert all(s is None for s in index.snapshot().deleted)
        else:
            index.close()
            index = cp.Index.open(path, mode="a")
        check_against(index, oracle, order, rng)
        check_against(index, oracle, order, rng, where={"par": "odd"}, where_fn=lambda m: m.get("par") == "odd")
    index.close()
    with cp.Index.open(path) as ro:
        check_against(ro, oracle, order, rng, where={"n": {"gte": 10, "lt": 30}},
                      where_fn=lambda m: 10 <= m["n"] < 30)
        assert ro.verify()["docs"] == len(oracle)
        derived = ro.derive(tmp_path / "d", "random", ratio=0.5)
        assert derived.ids == order  # a derived index carries only live pages
        derived.close()


def test_filters_match_the_oracle_and_refuse_unknown_fields(tmp_path, rng):
    n = 60
    meta = [{"source": f"f{i % 4}.pdf", "page": i % 10 + 1, "lang": "en" if i % 3 else "de", "scan": i % 5 == 0}
            for i in range(n)]
    embs = [page(i) for i in range(n)]
    meta[7]["source"] = None  # missing values never match
    with cp.Index.create(tmp_path / "f", dim=DIM) as index:
        index.add([f"p{i}" for i in range(n)], embs, metadata=meta, commit_every=25)  # 3 segments
        oracle = {f"p{i}": (embs[i], meta[i]) for i in range(n)}
        order = [f"p{i}" for i in range(n)]
        cases = [
            ({"source": "f1.pdf"}, lambda m: m["source"] == "f1.pdf"),
            ({"source": {"in": ["f0.pdf", "f3.pdf"]}, "lang": "en"},
             lambda m: m["source"] in ("f0.pdf", "f3.pdf") and m["lang"] == "en"),
            ({"page": {"gte": 3, "lte": 4}}, lambda m: 3 <= m["page"] <= 4),
            ({"page": {"gt": 9}}, lambda m: m["page"] > 9),
            ({"lang": {"ne": "en"}}, lambda m: m["lang"] != "en"),
            ({"scan": True}, lambda m: m["scan"] is True),
            ({"source": "absent.pdf"}, lambda m: False),
        ]
        for where, fn in cases:
            check_against(index, oracle, order, rng, where=where, where_fn=fn)
        two = index.search(rng.standard_normal((4, DIM)).astype(np.float32), k=5, candidates=60, where={"lang": "de"})
        assert all(oracle[h.id][1]["lang"] == "de" for h in two)
        with pytest.raises(InvalidInputError, match="unknown metadata field 'colour'.*filterable"):
            index.search(embs[0], where={"colour": "red"})
        with pytest.raises(InvalidInputError, match="unknown operator"):
            index.search(embs[0], where={"page": {"between": [1, 2]}})
        with pytest.raises(InvalidInputError, match="takes a number"):
            index.search(embs[0], where={"page": {"gt": "3"}})
        assert index.delete(where={"source": "f2.pdf"}) == 15
        assert not any(h.metadata.get("source") == "f2.pdf" for h in index.search(embs[2], k=60))


def test_bad_operations_raise_and_lose_nothing(tmp_path, rng):
    with cp.Index.create(tmp_path / "b", dim=DIM) as index:
        index.add(["a", "b"], [page(0), page(1)])
        before = index.version
        with pytest.raises(KeyError, match="nothing was deleted"):
            index.delete(["a", "nope"])
        assert index.delete(["nope"], missing="ignore") == 0
        with pytest.raises(InvalidInputError, match="dim 8, expected 16"):
            index.upsert(["a"], [np.ones((2, 8), np.float32)])
        with pytest.raises(DuplicateIdError, match="upsert"):
            index.add(["a"], [page(2)])
        bad = [("bad-\udc80", "UTF-8"), ("x\ny", "line break"), ("nul\x00", "NUL"), ("x" * 2000, "limit")]
        for doc_id, match in bad:
            with pytest.raises(InvalidInputError, match=match):
                index.add(["fine", doc_id], [page(3), page(4)])  # the good page is not committed either
        for arr, match in ((np.ones((2, DIM), np.int64), "floating"), (np.ones((2, DIM), bool), "floating")):
            with pytest.raises(InvalidInputError, match=match):
                index.add(["c"], [arr])
        q = page(5)
        for kw, match in (({"k": 2.7}, "k must be"), ({"k": 0}, "k must be"), ({"candidates": 0}, "candidates"),
                          ({"rerank": -5}, "rerank")):
            with pytest.raises(InvalidInputError, match=match):
                index.search(q, **kw)
        with pytest.raises(InvalidInputError, match="overflow"):
            index.search(np.full((3, DIM), 1e38, np.float32))
        assert index.version == before and index.ids == ["a", "b"] and "fine" not in index


def test_one_writer_many_snapshot_readers(tmp_path):
    path = tmp_path / "w"
    writer = cp.Index.create(path, dim=DIM)
    writer.add(["a"], [page(0)])
    with pytest.raises(LockedError, match="one writer at a time"):
        cp.Index.open(path, mode="a")
    reader = cp.Index.open(path)  # readers need no lock
    writer.add(["b"], [page(1)])
    writer.delete(["a"])
    assert reader.ids == ["a"] and reader.search(page(0), k=5)[0].id == "a"  # its snapshot
    reader.refresh()
    assert reader.ids == ["b"]
    for _ in range(KEEP := 12):  # commits that garbage-collect the files of old versions
        writer.upsert(["b"], [page(1)])
    old = cp.Index.open(path, version=writer.version)
    writer.compact()
    assert old.search(page(1), k=1)[0].id == "b"  # opened before the compaction: still reads
    writer.close()
    assert KEEP and reader.search(page(1), k=1)[0].id == "b"
    with cp.Index.open(path, mode="a") as again:  # the lock went with the writer
        assert len(again) == 1


def test_overwrite_never_destroys_what_others_use(tmp_path):
    path = tmp_path / "o"
    with cp.Index.create(path, dim=DIM) as index:
        index.add(["old"], [page(0)])
    writer = cp.Index.open(path, mode="a")
    with pytest.raises(LockedError):
        cp.Index.create(path, dim=DIM, overwrite=True)
    writer.close()
    reader = cp.Index.open(path)
    new = cp.Index.create(path, dim=DIM, overwrite=True)
    new.add(["new"], [page(1)])
    assert cp.Index.open(path).ids == ["old"]  # the old index stays until the new one is complete
    new.close()
    assert cp.Index.open(path).ids == ["new"]
    assert reader.ids == ["old"] and reader.search(page(0), k=1)[0].id == "old"  # its files are still open
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary leftovers


def test_streaming_search_is_exact_whatever_the_budget(tmp_path, rng):
    with cp.Index.create(tmp_path / "s", dim=DIM) as index:
        embs = [page(i) for i in range(80)]
        embs[5] = embs[6] = embs[40]  # exact ties across blocks and segments go to the earlier page
        index.add([f"p{i}" for i in range(80)], embs, commit_every=30)
        index.delete(["p2", "p50"])
        qs = [rng.standard_normal((4, DIM)).astype(np.float32), embs[40]]
        got = {}
        for budget in (1, 500, 5000, 1 << 30):  # from disk in blocks of any size, then from memory
            with cp.Index.open(tmp_path / "s", memory_budget=budget) as ro:
                got[budget] = ro.search(qs, k=10)
                got[("two", budget)] = ro.search(qs, k=10, candidates=80)  # a shortlist of every page: exact
                assert (budget < 1 << 30) == all(s.resident is None for s in ro.snapshot().segments)
        full = index.search(qs, k=10)
        assert all(g == full for g in got.values())
        assert [h.id for h in full[1][:3]] == ["p5", "p6", "p40"]


@pytest.mark.parametrize("codec", ["float32", "int8", "binary"])
def test_codecs_survive_compaction_bit_for_bit(tmp_path, codec):
    embs = [page(i) for i in range(30)]
    with cp.Index.create(tmp_path / "c", dim=DIM, dtype=codec) as index:
        index.add([f"p{i}" for i in range(30)], embs, commit_every=10)
        before = {i: index.get(i).vectors for i in index.ids}
        q = page(99)
        hits = index.search(q, k=5)
        index.delete(["p3", "p17"])
        index.compact()
        assert len(index.snapshot().segments) == 1 and len(index) == 28
        for i in index.ids:
            assert_array_equal(index.get(i).vectors, before[i])
        assert [h for h in index.search(q, k=5)] == [h for h in hits if h.id not in ("p3", "p17")][:5] or codec == "binary"


def test_compaction_gives_back_the_deleted_bytes(tmp_path):
    with cp.Index.create(tmp_path / "r", dim=64, summary_centroids=4) as index:
        embs = [np.random.default_rng(i).standard_normal((100, 64)).astype(np.float32) for i in range(400)]
        index.add([f"p{i}" for i in range(400)], embs, commit_every=200)
        size = index.info()["file_bytes"]
        index.delete([f"p{i}" for i in range(0, 400, 10)])  # 10%
        assert index.info()["file_bytes"] >= size  # deleting frees nothing until compaction
        res = index.compact()
        freed = res["bytes_before"] - res["bytes_after"]
        assert freed >= 0.95 * 0.1 * size * 0.97, res
        info = index.info()
        assert info["docs"] == 360 and info["deleted_docs"] == 0
        assert info["holds"]["vectors"] == 360 * 100 * 64 * 2 and info["holds"]["summaries"] > 0


def _flip(path, name=None, offset=None):
    """Flip one bit of a dataset (by name) or of the raw file (by offset)."""
    if name is not None:
        with h5py.File(path, "r") as f:
            offset = f[name].id.get_offset()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x10]))


@pytest.mark.parametrize("name", ["vectors", "positions", "docs/id_bytes", "offsets", "docs/metadata_bytes", "summary/codes"])
def test_damage_is_detected_never_returned(tmp_path, name):
    path = tmp_path / "x"
    with cp.Index.create(path, dim=DIM) as index:
        index.add([f"p{i}" for i in range(20)], [page(i) for i in range(20)],
                  metadata=[{"i": i} for i in range(20)])
    seg = next((path / layout.SEGMENTS).iterdir())
    with h5py.File(seg) as f:
        layout_ = f[name].id.get_create_plist().get_layout()
    if layout_ != h5py.h5d.CONTIGUOUS:  # chunked: flip inside the first chunk
        with h5py.File(seg) as f:
            offset = f[name].id.get_chunk_info(0).byte_offset
        _flip(seg, offset=offset)
    else:
        _flip(seg, name)
    with pytest.raises(CorruptionError):
        with cp.Index.open(path) as index:
            index.verify()
    if name in ("vectors",):
        with cp.Index.open(path) as index, pytest.raises(CorruptionError, match="document 0"):
            index.search(page(0), k=3)
        with cp.Index.open(path) as index, pytest.raises(CorruptionError, match="document 0"):
            index.search(page(0), k=3, candidates=20)  # the scattered reads of a rerank


def test_crafted_files_are_refused_before_any_kernel(tmp_path):
    path = tmp_path / "x"
    with cp.Index.create(path, dim=DIM) as index:
        index.add(["a", "b"], [page(0), page(1)])
    seg = next((path / layout.SEGMENTS).iterdir())
    # offsets past the vectors, with every checksum recomputed: structure still refuses it
    with h5py.File(seg, "r+") as f:
        f["offsets"][1] = 10**9
        checks = json.loads(f.attrs["checksums"])
        from colprune.index.segment import hash_bytes

        checks["offsets"] = f"{hash_bytes(f['offsets'][()]):016x}"
        f.attrs["checksums"] = json.dumps(checks, sort_keys=True)
    with pytest.raises(CorruptionError):
        cp.Index.open(path)
    # an external link, or data kept in another file, is never followed
    for kind in ("link", "external"):
        p2 = tmp_path / f"e-{kind}"
        with cp.Index.create(p2, dim=DIM) as index:
            index.add(["a"], [page(0)])
        seg2 = next((p2 / layout.SEGMENTS).iterdir())
        with h5py.File(seg2, "r+") as f:
            if kind == "link":
                f["docs/evil"] = h5py.ExternalLink("/etc/passwd", "/")
            else:
                f.create_dataset("docs/evil", (16,), np.uint8, external=[("/etc/passwd", 0, 16)])
        with pytest.raises(FormatError, match="refused"):
            cp.Index.open(p2)


def test_encoder_recorded_is_a_name_not_something_loaded(tmp_path):
    with cp.Index.create(tmp_path / "e", dim=DIM, encoder="/tmp/evil-model") as index:
        index.add(["a"], [page(0)])
        assert index.encoder == "/tmp/evil-model" and index.info()["encoder"] == "/tmp/evil-model"




def kill_rounds(tmp_path, op, rounds, rng):
    import signal
    import time

    path = tmp_path / f"k-{op}"
    with cp.Index.create(path, dim=16) as index:
        index.add([f"p{i}" for i in range(300)], [np.random.default_rng(i).standard_normal((40, 16)).astype(np.float32)
                                                   for i in range(300)], commit_every=100)
    for _ in range(rounds):
        with cp.Index.open(path) as before:
            n_before = len(before)
        from fault_injection import KILLER

        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(path), op], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline(), "writer died on its own"
            time.sleep(rng.uniform(0.0, 0.08))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        with cp.Index.open(path) as index:  # a committed state, whole and verified
            index.verify()
            n = len(index)
            if op == "upsert":
                assert n == n_before and "p1" in index and "p2" in index
            assert len(set(index.ids)) == n
            index.search(np.ones((2, 16), np.float32), k=3)
    with cp.Index.open(path, mode="a") as index:  # and still writable
        index.add(["after"], [np.ones((2, 16), np.float32)])


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
@pytest.mark.parametrize("op", ["append", "upsert", "delete", "compaction"])
def test_sigkill_at_any_moment_keeps_a_committed_state(tmp_path, op):
    kill_rounds(tmp_path, op, 3, np.random.default_rng(1))


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
@pytest.mark.parametrize("op", ["append", "upsert", "delete", "compaction"])
def test_sigkill_many_rounds(tmp_path, op):
    kill_rounds(tmp_path, op, 20, np.random.default_rng(2))


READER = textwrap.dedent(
    """
    import sys, numpy as np, colprune as cp
    path, n = sys.argv[1], int(sys.argv[2])
    q = np.ones((3, 16), np.float32)
    for _ in range(n):
        with cp.Index.open(path) as index:
            ids = index.ids
            assert len(ids) == len(set(ids)) and len(ids) >= 100, len(ids)
            hits = index.search(q, k=5)
            assert all(h.id in set(ids) for h in hits)
    print("ok", flush=True)
    """
)


def test_a_reader_process_searches_while_the_writer_compacts(tmp_path):
    path = tmp_path / "rw"
    with cp.Index.create(path, dim=16) as index:
        index.add([f"p{i}" for i in range(200)], [np.random.default_rng(i).standard_normal((30, 16)).astype(np.float32)
                                                   for i in range(200)], commit_every=20)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "40"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    with cp.Index.open(path, mode="a") as index:
        for r in range(6):
            index.delete([index.ids[0]])
            index.upsert([index.ids[-1]], [np.ones((4, 16), np.float32)])
            index.compact()
    out, err = reader.communicate(timeout=300)
    assert reader.returncode == 0 and out.strip() == "ok", err[-2000:]


def test_collection_commands(tmp_path):
    """delete, compact, verify, summarize and upgrade from the command line, errors as one line."""
    import subprocess

    from conftest import GOLDEN

    path = tmp_path / "x.h5"
    with cp.Index.create(path, dim=DIM) as index:
        index.add([f"p{i}" for i in range(10)], [page(i) for i in range(10)],
                  metadata=[{"source": f"f{i % 2}.pdf"} for i in range(10)])

    def run(*args):
        return subprocess.run([sys.executable, "-m", "colprune", *map(str, args)], capture_output=True, text=True)

    r = run("delete", path, "p1", "p2")
    assert r.returncode == 0 and "deleted 2 pages, 8 left" in r.stdout
    r = run("delete", path, "nope")
    assert r.returncode == 4 and "not in" in r.stderr and "Traceback" not in r.stderr
    r = run("delete", path, "--where", '{"colour": "red"}')
    assert r.returncode == 2 and "filterable: ['source']" in r.stderr
    assert "deleted 4 pages" in run("delete", path, "--where", '{"source": "f0.pdf"}').stdout
    assert "1 -> 1 segment" in run("compact", path).stdout
    assert run("verify", path).stdout.startswith(f"{path}: ok, 4 pages")
    assert run("summarize", path, "--centroids", "2").returncode == 0
    r = run("upgrade", GOLDEN / "v2.h5", tmp_path / "up", "-q")
    assert r.returncode == 0 and "format 4, 4 pages" in r.stdout
    with cp.Index.open(path) as index:
        assert index.ids == ["p3", "p5", "p7", "p9"] and index.snapshot().summary_centroids == 2
    with cp.Index.open(path) as index:
        seg = index.snapshot().segments[0].path  # the live one (older versions' files are kept a while for readers)
    _flip(seg, "vectors")
    r = run("verify", path)
    assert r.returncode == 5 and "does not match its checksum" in r.stderr


@pytest.mark.parametrize("codec", ["float32", "float16", "int8"])
def test_torch_device_search_equals_the_kernels(tmp_path, rng, codec):
    pytest.importorskip("torch")
    with cp.Index.create(tmp_path / "t", dim=DIM, dtype=codec) as index:
        embs = [page(i) for i in range(40)]
        index.add([f"p{i}" for i in range(40)], embs, metadata=[{"odd": i % 2} for i in range(40)], commit_every=15)
        index.delete(["p4"])
        qs = [rng.standard_normal((5, DIM)).astype(np.float32) for _ in range(3)]
        for where in (None, {"odd": 1}):
            want = index.search(qs, k=6, where=where)
            got = index.search(qs, k=6, where=where, device="cpu")
            if codec == "int8":  # the kernel quantises queries too: compare with float MaxSim over the stored pages
                live = [i for i in index.ids if where is None or index.get(i).metadata["odd"] == 1]
                vecs = [index.get(i).vectors.astype(np.float32) for i in live]
                off = np.zeros(len(vecs) + 1, np.int64)
                np.cumsum([v.shape[0] for v in vecs], out=off[1:])
                ref = maxsim_reference(qs, np.concatenate(vecs), off)
                want = [[cp.Hit(live[j], float(r[j])) for j in sorted(range(len(live)), key=lambda j: (-r[j], j))[:6]]
                        for r in ref]
            assert [[h.id for h in hs] for hs in got] == [[h.id for h in hs] for hs in want]
            tol = 1e-4 if codec == "int8" else 1e-5
            assert_allclose([h.score for hs in got for h in hs], [h.score for hs in want for h in hs], rtol=tol, atol=tol)
        with pytest.raises(InvalidInputError, match="candidates"):
            index.search(qs, k=3, device="cpu", candidates=10)


@pytest.mark.parametrize("codec", ["float16", "float32", "int8"])
def test_add_packed_stores_what_add_stores(tmp_path, rng, codec):
    pages = [page(i) for i in range(40)]
    imps = [rng.random(p.shape[0]).astype(np.float32) for p in pages]
    ids = [f"p{i}" for i in range(40)]
    meta = [{"n": i, "kind": "even" if i % 2 == 0 else "odd"} for i in range(40)]
    lengths = np.array([p.shape[0] for p in pages])
    with cp.Index.create(tmp_path / "a", dim=DIM, dtype=codec, summary_centroids=3) as a, \
            cp.Index.create(tmp_path / "b", dim=DIM, dtype=codec, summary_centroids=3) as b:
        a.add(ids, pages, imps, metadata=meta)
        flat = np.concatenate(pages)
        b.add_packed(ids[:25], flat[: lengths[:25].sum()].astype(np.float16 if codec == "float16" else np.float32),
                     lengths[:25], np.concatenate(imps[:25]), metadata=meta[:25], commit_every=10)
        b.add_packed(ids[25:], flat[lengths[:25].sum():], lengths[25:], np.concatenate(imps[25:]), metadata=meta[25:])
        assert b.ids == a.ids and len(b) == 40
        for i in ids:
            pa, pb = a.get(i), b.get(i)
            assert_array_equal(pa.vectors, pb.vectors)
            assert_array_equal(pa.positions, pb.positions)
            assert_allclose(pa.importance, pb.importance)
            assert pa.metadata == pb.metadata
        assert_array_equal(a.summary()[0], b.summary()[0])
        q = rng.standard_normal((3, DIM)).astype(np.float32)
        assert [h.id for h in a.search(q, k=5, where={"kind": "odd"})] == [h.id for h in b.search(q, k=5, where={"kind": "odd"})]
        assert b.verify()["docs"] == 40


def test_add_packed_refuses_bad_input_and_loses_nothing(tmp_path):
    v = np.ones((6, DIM), np.float16)
    with cp.Index.create(tmp_path / "x", dim=DIM) as index:
        index.add_packed(["a", "b"], v, [2, 4])
        bad = v.copy()
        bad[4, 3] = np.inf
        cases = [
            ((["c", "d"], bad, [2, 4]), "document 'd'.*NaN or infinite.*row 2"),
            ((["c", "d"], v, [2, 3]), "lengths sum to 5"),
            ((["c", "d"], v, [6, 0]), "document 'd': empty page"),
            ((["c", "d"], v, [2.0, 4.0]), "lengths must be 2 integers"),
            ((["c"], v, [2, 4]), "lengths must be 1 integers"),
            ((["c", "c"], v, [2, 4]), "appears twice"),
            ((["c", "a"], v, [2, 4]), "already in"),
            ((["c", "d"], np.ones((6, DIM + 1)), [2, 4]), r"shape \(N, 16\)"),
        ]
        for args, match in cases:
            with pytest.raises((InvalidInputError, DuplicateIdError), match=match):
                index.add_packed(*args)
        with pytest.raises(InvalidInputError, match="document 'c'.*importance.*row 1"):
            index.add_packed(["c", "d"], v, [2, 4], np.array([0, np.nan, 0, 0, 0, 0], np.float32))
        with pytest.raises(InvalidInputError, match="importance has shape"):
            index.add_packed(["c", "d"], v, [2, 4], np.zeros(5))
        assert index.ids == ["a", "b"] and index.n_vectors == 6


def test_add_packed_with_a_pruner_prunes_each_page(tmp_path, rng):
    pages = [rng.standard_normal((20, DIM)).astype(np.float32) for _ in range(3)]
    imps = [rng.random(20) for _ in range(3)]
    with cp.Index.create(tmp_path / "a", dim=DIM) as a, cp.Index.create(tmp_path / "b", dim=DIM) as b:
        got = [p.n_kept for p in a.add(["x", "y", "z"], pages, imps, pruner="ratio")]
        b.add_packed(["x", "y", "z"], np.concatenate(pages), [20, 20, 20], np.concatenate(imps), pruner="ratio")
        assert [b.get(i).vectors.shape[0] for i in "xyz"] == got and b.pruner == a.pruner


def test_an_interrupted_repack_leaves_the_index_as_it_was(tmp_path, rng, monkeypatch):
    import colprune.index.derive as derive

    path = tmp_path / "c.h5"
    embs = [rng.standard_normal((5, 8)).astype(np.float32) for _ in range(40)]
    with cp.Index.create(path, dim=8, dtype="binary") as index:
        index.add([f"p{i}" for i in range(40)], embs)
    calls = {"n": 0}
    real = derive.copy_pages

    def interrupted(pages, total, convert, write, **kw):
        def write_then_stop(prepared):
            write(prepared)
            calls["n"] += 1
            raise KeyboardInterrupt

        return real(pages, total, convert, write_then_stop, **kw)

    monkeypatch.setattr(derive, "copy_pages", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cp.index.repack(path, rerank=False)
    assert calls["n"] == 1
    with cp.Index.open(path) as index:
        assert len(index) == 40 and index.has_rerank
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no partial copy left beside it
