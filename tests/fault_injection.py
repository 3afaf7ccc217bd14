"""Fault injection on colprune collections: bit flips, overwrites, truncations, crafted files.

Shared by ``tests/test_fuzz.py`` (a fixed-seed sample in every CI run) and
``bench/reliability.py`` (the full table). Each trial damages a copy of a reference
collection, then a long-lived worker process opens it and reads everything (ids, every page,
searches with and without filters, two-stage); the outcome is ``error`` (a colprune error),
``unchanged`` (everything equal to the reference), ``WRONG`` (a different result, silently),
``CRASH`` (the worker died) or ``HANG`` (no answer in time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np

import colprune as cp
from colprune.index import layout
from colprune.index.segment import hash_bytes

__all__ = ["KILLER", "make_reference", "Worker", "flip_bits", "overwrite_bytes", "truncate", "CRAFTS", "craft"]

DIM = 16


def make_reference(path: str) -> None:
    """A small collection that uses every part of the format: 3 segments, deletions, metadata, summaries, signals."""
    rng = np.random.default_rng(11)
    with cp.Index.create(path, dim=DIM, signals=["cls"], summary_centroids=2) as index:
        for s in range(3):
            ids = [f"p{s}-{i}" for i in range(12)]
            embs = [rng.standard_normal((int(rng.integers(1, 9)), DIM)).astype(np.float32) for _ in ids]
            imps = [rng.random(e.shape[0]) for e in embs]
            index.add(ids, embs, imps, metadata=[{"src": f"f{i % 3}.pdf", "page": i} for i in range(12)],
                      signals=[{"cls": i} for i in imps])
        index.delete(["p0-3", "p2-5"])
        index.record_skipped({"blank.pdf#1": "no text layer"})


READ = textwrap.dedent(
    """
    import json, sys, traceback
    import numpy as np
    import colprune as cp
    from colprune.errors import ColpruneError
    rng = np.random.default_rng(0)
    QS = [rng.standard_normal((3, 16)).astype(np.float32) for _ in range(3)]

    def snapshot(path):
        with cp.Index.open(path) as ix:
            out = {"ids": ix.ids, "skipped": ix.skipped, "len": len(ix)}
            out["pages"] = [[p.id, p.vectors.tobytes().hex(), p.positions.tolist(), p.importance.tolist(),
                             p.metadata, p.signals["cls"].tolist(), p.n_original] for p in ix.iter_pages()]
            for name, kw in (("exact", {}), ("where", {"where": {"src": "f1.pdf"}}), ("two", {"candidates": 5})):
                out[name] = [[(h.id, round(h.score, 5), h.metadata) for h in hs] for hs in ix.search(QS, k=5, **kw)]
        return out

    for line in sys.stdin:
        path, ref = line.rstrip("\\n").split("\\t")
        try:
            got = snapshot(path)
        except (ColpruneError, FileNotFoundError, KeyError) as e:
            print(json.dumps({"outcome": "error", "type": type(e).__name__, "msg": str(e)[:300]}), flush=True)
            continue
        except Exception as e:  # not a colprune error: counts as a failure of the library
            print(json.dumps({"outcome": "RAW", "type": type(e).__name__, "msg": traceback.format_exc()[-600:]}), flush=True)
            continue
        if ref == "-":
            print(json.dumps({"outcome": "snapshot", "data": got}), flush=True)
        else:
            want = json.load(open(ref))
            print(json.dumps({"outcome": "unchanged" if json.loads(json.dumps(got)) == want else "WRONG"}), flush=True)
    """
)


class Worker:
    """A reader process fed trial paths; restarted after a crash or a hang."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READ], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def run(self, path: str, ref: str) -> dict:
        import selectors

        fresh = self.proc is None or self.proc.poll() is not None
        if fresh:
            self._start()
        self.proc.stdin.write(f"{path}\t{ref}\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        # a fresh worker imports colprune and compiles its kernels first: minutes on a busy 2-core machine
        if not sel.select(max(self.timeout, 900) if fresh else self.timeout):
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return {"outcome": "HANG"}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
            return {"outcome": "CRASH", "returncode": rc}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


# a writer that commits in a loop until killed: append, upsert, delete, compaction or overwrite
KILLER = textwrap.dedent(
    """
    import os, sys, numpy as np, colprune as cp
    path, op = sys.argv[1], sys.argv[2]
    def page(i):
        return np.random.default_rng(i).standard_normal((50 + i % 40, 16)).astype(np.float32)
    if op == "overwrite":
        i = 0
        while True:
            with cp.Index.create(path, dim=16, overwrite=True) as index:
                index.add([f"w{i}-{j}" for j in range(20)], [page(j) for j in range(20)])
            i += 1
            print(i, flush=True)
    index = cp.Index.open(path, mode="a")
    i = 0
    while True:
        if op == "append":
            index.add([f"n{os.getpid()}-{i}", f"n{os.getpid()}-{i + 1}"], [page(i), page(i + 1)])
        elif op == "upsert":
            index.upsert(["p1", "p2"], [page(i), page(i + 1)])
        elif op == "delete":
            index.delete([index.ids[0]])
        else:
            index.add([f"c{os.getpid()}-{i}"], [page(i)]); index.delete([index.ids[0]]); index.compact()
        i += 2
        print(",".join(index.ids[-3:]) + "|" + str(len(index)), flush=True)
    """
)


def files_of(root: str) -> list[str]:
    """Every file a reader of the newest version reads (what damage can reach)."""
    out = [os.path.join(root, layout.MARKER)]
    for sub in (layout.MANIFESTS, layout.SEGMENTS, layout.DELETES):
        folder = os.path.join(root, sub)
        out += [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    return out


def flip_bits(path: str, rng: np.random.Generator, n: int = 1) -> str:
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        for _ in range(n):
            off = int(rng.integers(0, size))
            fh.seek(off)
            b = fh.read(1)[0]
            fh.seek(off)
            fh.write(bytes([b ^ (1 << int(rng.integers(0, 8)))]))
    return f"flip {os.path.basename(path)}@{off}"


def overwrite_bytes(path: str, rng: np.random.Generator) -> str:
    size = os.path.getsize(path)
    off = int(rng.integers(0, size))
    n = int(rng.integers(1, 64))
    with open(path, "r+b") as fh:
        fh.seek(off)
        fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
    return f"overwrite {os.path.basename(path)}@{off}+{n}"


def truncate(path: str, rng: np.random.Generator) -> str:
    size = os.path.getsize(path)
    keep = int(rng.integers(0, max(1, size)))
    with open(path, "r+b") as fh:
        fh.truncate(keep)
    return f"truncate {os.path.basename(path)} to {keep}/{size}"


# -- crafted files: damage with every checksum recomputed, so only structure checks can catch it

def _reseal(root: str, seg_path: str) -> None:
    """Recompute a segment's checksum record and the manifest entries that vouch for it."""
    with h5py.File(seg_path, "r+") as f:
        checks = {}
        from colprune.index.segment import whole_hashed

        for name in whole_hashed(f):
            try:
                checks[name] = f"{hash_bytes(f[name][()]):016x}"
            except OSError:  # a virtual dataset over a non-HDF5 file: left unhashed
                checks[name] = "0" * 16
        record = json.dumps(checks, sort_keys=True)
        f.attrs[layout.A_CHECKS] = record
    import xxhash

    mdir = os.path.join(root, layout.MANIFESTS)
    latest = max(os.listdir(mdir))
    doc = json.load(open(os.path.join(mdir, latest)))
    for s in doc["body"]["segments"]:
        if s["name"] == os.path.basename(seg_path):
            s["checksum"] = f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"
    _write_manifest(root, doc["body"])


def _write_manifest(root: str, body: dict) -> None:
    import xxhash

    mdir = os.path.join(root, layout.MANIFESTS)
    latest = max(os.listdir(mdir))
    check = f"{xxhash.xxh3_64_intdigest(json.dumps(body, sort_keys=True).encode()):016x}"
    with open(os.path.join(mdir, latest), "w") as fh:
        json.dump({"body": body, "checksum": check}, fh, sort_keys=True)


def _segments(root: str) -> list[str]:
    folder = os.path.join(root, layout.SEGMENTS)
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))]


def _set(name: str, value_fn):
    def craft_fn(root: str) -> None:
        seg = _segments(root)[0]
        with h5py.File(seg, "r+") as f:
            data = f[name][()]
            new = value_fn(data)
            if new.shape == data.shape and new.dtype == data.dtype:
                f[name][...] = new
            else:
                del f[name]
                f.create_dataset(name, data=new)
        _reseal(root, seg)

    return craft_fn


def _offsets(values):
    def fn(d):
        d = d.copy()
        for i, v in values:
            d[i] = v
        return d

    return fn


def _link(kind: str):
    def craft_fn(root: str) -> None:
        seg = _segments(root)[0]
        with h5py.File(seg, "r+") as f:
            if kind == "external-link":
                f["docs/evil"] = h5py.ExternalLink("/etc/passwd", "/")
            elif kind == "soft-link":
                f["docs/evil"] = h5py.SoftLink("/vectors")
            elif kind == "external-storage":
                n = f["docs/id_bytes"].shape[0]
                del f["docs/id_bytes"]
                f.create_dataset("docs/id_bytes", (n,), np.uint8, external=[("/etc/passwd", 0, n)])
            elif kind == "virtual":
                n = f["docs/id_bytes"].shape[0]
                data = f["docs/id_bytes"][()]
                del f["docs/id_bytes"]
                lay = h5py.VirtualLayout(shape=(n,), dtype=np.uint8)
                lay[:] = h5py.VirtualSource("/etc/passwd", "x", shape=(n,))
                f.create_virtual_dataset("docs/id_bytes", lay)
                del data
        _reseal(root, seg)

    return craft_fn


def _manifest(edit):
    def craft_fn(root: str) -> None:
        mdir = os.path.join(root, layout.MANIFESTS)
        body = json.load(open(os.path.join(mdir, max(os.listdir(mdir)))))["body"]
        edit(body)
        _write_manifest(root, body)

    return craft_fn


def _attr(key, value):
    def craft_fn(root: str) -> None:
        seg = _segments(root)[0]
        with h5py.File(seg, "r+") as f:
            f.attrs[key] = value
        _reseal(root, seg)

    return craft_fn


def _crafts() -> dict:
    c: dict = {}
    big = [10**9, -1, -(10**9), 2**40, 2**62, 3]
    for name in ("offsets", "docs/id_offsets", "docs/metadata_offsets", "summary/offsets"):
        for pos in (0, 1, -1, 2):
            for v in big:
                c[f"{name}[{pos}]={v}"] = _set(name, _offsets([(pos, v)]))
        c[f"{name} reversed"] = _set(name, lambda d: d[::-1].copy())
        c[f"{name} float"] = _set(name, lambda d: d.astype(np.float64))
        c[f"{name} short"] = _set(name, lambda d: d[:-1].copy())
    c["vectors NaN"] = _set("vectors", lambda d: np.full_like(d, np.nan))
    c["importance wrong dtype"] = _set("importance", lambda d: d.astype(np.float64))
    c["positions short"] = _set("positions", lambda d: d[:-1].copy())
    c["grid 3 columns"] = _set("docs/grid", lambda d: np.zeros((d.shape[0], 3), np.int32))
    c["id bytes not UTF-8"] = _set("docs/id_bytes", lambda d: np.full_like(d, 0xFF))
    c["metadata not JSON"] = _set("docs/metadata_bytes", lambda d: np.full_like(d, ord("{")))
    c["summary codes wide"] = _set("summary/codes", lambda d: np.zeros((d.shape[0], d.shape[1] + 1), np.int8))
    c["summary scales NaN"] = _set("summary/scales", lambda d: np.full_like(d, np.nan))
    c["filter codes out of range"] = _set("filters/f0/codes", lambda d: np.full_like(d, 10**6))
    for kind in ("external-link", "soft-link", "external-storage", "virtual"):
        c[kind] = _link(kind)
    c["n_docs attr huge"] = _attr("n_docs", 10**12)
    c["n_vectors attr negative"] = _attr("n_vectors", -5)
    c["dim attr other"] = _attr("dim", 7)
    c["codec attr unknown"] = _attr("codec", "float8")
    c["format attr foreign"] = _attr("format", "not-colprune")
    c["manifest path traversal"] = _manifest(lambda b: b["segments"][0].__setitem__("name", "../../etc/passwd.h5"))
    c["manifest absent segment"] = _manifest(lambda b: b["segments"][0].__setitem__("name", "seg-absent.h5"))
    c["manifest n_docs lie"] = _manifest(lambda b: b["segments"][0].__setitem__("n_docs", 10**9))
    c["manifest negative vectors"] = _manifest(lambda b: b["segments"][1].__setitem__("n_vectors", -1))
    c["manifest codec other"] = _manifest(lambda b: b.__setitem__("codec", "int8"))
    c["manifest dim other"] = _manifest(lambda b: b.__setitem__("dim", 17))
    c["manifest deletes count lie"] = _manifest(lambda b: b["segments"][0]["deletes"].__setitem__("count", 5))
    c["manifest deletes traversal"] = _manifest(lambda b: b["segments"][0]["deletes"].__setitem__("name", "../COLPRUNE"))
    c["manifest version mismatch"] = _manifest(lambda b: b.__setitem__("version", 10**6))
    c["manifest segments not a list"] = _manifest(lambda b: b.__setitem__("segments", {"a": 1}))
    c["manifest duplicate segment"] = _manifest(lambda b: b["segments"].append(dict(b["segments"][1])))
    return c


CRAFTS = _crafts()


def craft(root: str, name: str) -> None:
    CRAFTS[name](root)


def copy_of(reference: str, dest: str) -> str:
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(reference, dest)
    return dest
