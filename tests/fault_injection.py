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

__all__ = ["KILLER", "make_reference", "Worker", "flip_bits", "overwrite_bytes", "truncate", "CRAFTS", "craft",
           "make_residual_reference", "RESIDUAL_CRAFTS"]

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
    import json, os, resource, sys, traceback
    import numpy as np
    import colprune as cp
    from colprune.errors import ColpruneError
    rng = np.random.default_rng(0)
    QS = [rng.standard_normal((3, 16)).astype(np.float32) for _ in range(3)]
    HEADROOM = int(sys.argv[1])  # bytes of address space a trial may add to what the warm-up used

    def snapshot(path):
        with cp.Index.open(path) as ix:
            out = {"ids": ix.ids, "skipped": ix.skipped, "len": len(ix)}
            out["pages"] = [[p.id, p.vectors.tobytes().hex(), p.positions.tolist(), p.importance.tolist(),
                             p.metadata, p.signals["cls"].tolist(), p.n_original] for p in ix.iter_pages()]
            for name, kw in (("exact", {}), ("where", {"where": {"src": "f1.pdf"}}), ("two", {"candidates": 5})):
                out[name] = [[(h.id, round(h.score, 5), h.metadata) for h in hs] for hs in ix.search(QS, k=5, **kw)]
            out["verified"] = ix.verify()["docs"]
        return out

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    capped = False
    for line in sys.stdin:
        path, ref = line.rstrip("\\n").split("\\t")
        before = peak_mb()
        try:
            got = snapshot(path)
        except (ColpruneError, FileNotFoundError) as e:
            res = {"outcome": "error", "type": type(e).__name__, "msg": str(e)[:300]}
        except MemoryError as e:
            res = {"outcome": "MEMORY", "type": "MemoryError", "msg": str(e)[:300]}
        except Exception as e:  # not a colprune error: counts as a failure of the library
            res = {"outcome": "RAW", "type": type(e).__name__, "msg": traceback.format_exc()[-600:]}
        else:
            if ref == "-":
                res = {"outcome": "snapshot", "data": got}
            else:
                want = json.load(open(ref))
                res = {"outcome": "unchanged" if json.loads(json.dumps(got)) == want else "WRONG"}
        msg = res.get("msg", "")
        if "MemoryError" in msg or "Unable to allocate" in msg or "memory allocation" in msg:
            res["outcome"] = "MEMORY"  # an allocation refused by the cap below: the reader tried to allocate it
        res["grew_mb"] = round(peak_mb() - before, 1)
        print(json.dumps(res), flush=True)
        if not capped:  # after the first (warm-up) request: cap the address space from here on
            vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (vm + HEADROOM, resource.getrlimit(resource.RLIMIT_AS)[1]))
            capped = True
    """
)


class Worker:
    """A reader process fed trial paths, one line each; restarted after a crash, a hang or a memory explosion.

    ``timeout`` bounds each trial (a hang fails it instead of blocking the run). The first
    request (``run(reference, "-")``) warms the process up (imports, kernel compilation); from
    then on its address space is capped at what it uses plus ``headroom`` bytes, and a trial is
    ``MEMORY`` when it raised the process's peak RSS by more than ``memory_mb`` or an
    allocation hit the cap. A restarted worker warms up on the same reference first.
    """

    def __init__(self, timeout: float = 30.0, *, memory_mb: float = 200.0, headroom: int = 1 << 30) -> None:
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.headroom = headroom
        self.warm: str | None = None
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", READ, str(self.headroom)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def _ask(self, path: str, ref: str, timeout: float) -> dict:
        import selectors

        self.proc.stdin.write(f"{path}\t{ref}\n")
        self.proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self._stop()
            return {"outcome": "HANG"}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
            return {"outcome": "CRASH", "returncode": rc}
        return json.loads(line)

    def _stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def run(self, path: str, ref: str) -> dict:
        if ref == "-" and self.warm is None:
            self.warm = path
        if self.proc is None or self.proc.poll() is not None:
            self._start()
            # a fresh worker imports colprune and compiles its kernels first: minutes on a busy 2-core machine
            if self.warm is not None and not (ref == "-" and path == self.warm):
                warm = self._ask(self.warm, "-", 900)
                if warm["outcome"] != "snapshot":
                    raise RuntimeError(f"the worker could not read the reference: {warm}")
            else:
                return self._ask(path, ref, 900)
        out = self._ask(path, ref, self.timeout)
        if out.get("grew_mb", 0) > self.memory_mb and out["outcome"] != "MEMORY":
            out = {**out, "outcome": "MEMORY", "was": out["outcome"]}
        if out["outcome"] == "MEMORY" and self.proc is not None:
            self._stop()  # a fresh process: its peak and cap start again from the warm-up
        return out

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


#CRAFTS
# -- crafted files: damage with every checksum recomputed, so only structure checks can catch it
#
# Each craft edits a fresh copy of the reference and recomputes what vouches for the edit (per-document
# hashes, whole-dataset hashes, the checksum record, the manifest's checksums): what is tested is the
# reader's structure checks, its file-type checks and its bounds, never its checksums. A craft returns
# None, or a label saying why it changed nothing (a device a non-root user cannot create).

GIB = 1 << 30
BOMB = 3 * GIB  # what a memory bomb declares
_ZEROS = np.zeros(16 << 20, np.uint8)


def _mdir(root: str) -> str:
    return os.path.join(root, layout.MANIFESTS)


def _latest(root: str) -> str:
    return os.path.join(_mdir(root), max(n for n in os.listdir(_mdir(root)) if n.endswith(".json")))


def _next_manifest(root: str) -> str:
    return os.path.join(_mdir(root), layout.manifest_name(int(os.path.basename(_latest(root))[:20]) + 1))


def _body(root: str) -> dict:
    with open(_latest(root)) as fh:
        return json.load(fh)["body"]


def _body_hash(body) -> str:
    import xxhash

    return f"{xxhash.xxh3_64_intdigest(json.dumps(body, sort_keys=True).encode()):016x}"


def _write_manifest(root: str, body: dict) -> None:
    with open(_latest(root), "w") as fh:
        json.dump({"body": body, "checksum": _body_hash(body)}, fh, sort_keys=True)


def _write_manifest_text(root: str, body_text: str, path: str | None = None) -> None:
    """A manifest whose body is ``body_text`` verbatim (``1e999``, ``NaN``...), its checksum that of the parsed body."""
    try:
        check = _body_hash(json.loads(body_text))
    except (ValueError, RecursionError):
        check = "0" * 16  # too deep to parse here either: no checksum can be computed
    with open(path or _latest(root), "w") as fh:
        fh.write(f'{{"body": {body_text}, "checksum": "{check}"}}')


def _segments(root: str) -> list[str]:
    """Segment files in manifest order."""
    return [os.path.join(root, layout.SEGMENTS, s["name"]) for s in _body(root)["segments"]]


def _deletes(root: str) -> str:
    s = next(s for s in _body(root)["segments"] if s["deletes"])
    return os.path.join(root, layout.DELETES, s["deletes"]["name"])


def _zeros_hash(prefix: bytes, total: int) -> str:
    """xxh3-64 of ``prefix`` followed by zeros up to ``total`` bytes (a declared dataset never written)."""
    import xxhash

    h = xxhash.xxh3_64(prefix[:total])
    left = total - min(len(prefix), total)
    while left > 0:
        step = min(left, _ZEROS.size)
        h.update(_ZEROS[:step])
        left -= step
    return f"{h.intdigest():016x}"


def _doc_hashes(f: h5py.File) -> None:
    """Recompute the per-document hashes (``checks/*``) from what the file now holds."""
    off = f[layout.OFFSETS][()]
    moff = f[layout.DOC_META_OFFSETS][()]
    meta = f[layout.DOC_META_BYTES][()]
    sig = sorted(f[layout.SIGNALS]) if layout.SIGNALS in f else []
    groups = {"vectors": [n for n in (layout.VECTORS, layout.SCALES, layout.CODES) if n in f], "rerank": [layout.RERANK],
              "aux": [layout.POSITIONS, layout.IMPORTANCE, layout.PATCH_MASK] + [f"{layout.SIGNALS}/{k}" for k in sig]}
    data = {n: f[n][()] for names in groups.values() for n in names if n in f}
    for g, names in groups.items():
        if f"checks/{g}" not in f:
            continue
        f[f"checks/{g}"][...] = [hash_bytes(*(data[n][off[d] : off[d + 1]] for n in names)) for d in range(len(off) - 1)]
    f["checks/meta"][...] = [hash_bytes(meta[moff[d] : moff[d + 1]]) for d in range(len(moff) - 1)]


def _reseal(root: str, seg_path: str, *, docs: bool = True, known: dict | None = None) -> None:
    """Recompute a segment's hashes and checksum record, and the manifest entries that vouch for it.

    ``known`` gives hashes of datasets too large to read here (declared, never written); ``docs``
    recomputes the per-document hashes too (skipped when the offsets no longer allow it).
    """
    import xxhash

    from colprune.index.segment import whole_hashed

    with h5py.File(seg_path, "r+") as f:
        if docs:
            try:
                _doc_hashes(f)
            except (ValueError, TypeError, IndexError, KeyError, OSError):
                pass  # offsets crafted out of shape: the per-document hashes stay as they were
        checks = {}
        for name in whole_hashed(f):
            if known and name in known:
                checks[name] = known[name]
                continue
            try:
                checks[name] = f"{hash_bytes(np.ascontiguousarray(f[name][()])):016x}"
            except (OSError, TypeError, ValueError):  # a virtual dataset over a non-HDF5 file: left unhashed
                checks[name] = "0" * 16
        record = json.dumps(checks, sort_keys=True)
        f.attrs[layout.A_CHECKS] = record
    body = _body(root)
    for s in body["segments"]:
        if s["name"] == os.path.basename(seg_path):
            s["checksum"] = f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"
    _write_manifest(root, body)


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    if name in f:
        del f[name]
    f.create_dataset(name, data=data)


def _set(name: str, value_fn, seg: int = 0):
    """Dataset ``name`` of segment ``seg`` replaced by ``value_fn(its data)``."""
    def craft_fn(root: str) -> None:
        path = _segments(root)[seg]
        with h5py.File(path, "r+") as f:
            data = f[name][()]
            new = np.asarray(value_fn(data))
            if new.shape == data.shape and new.dtype == data.dtype:
                f[name][...] = new
            else:
                _replace(f, name, new)
        _reseal(root, path)

    return craft_fn


def _edit(fn, seg: int = 0, *, docs: bool = True):
    """Segment ``seg`` opened read-write and given to ``fn(f)``, then resealed."""
    def craft_fn(root: str) -> None:
        path = _segments(root)[seg]
        with h5py.File(path, "r+") as f:
            fn(f)
        _reseal(root, path, docs=docs)

    return craft_fn


def _offsets(values):
    def fn(d):
        d = d.copy()
        for i, v in values:
            d[i] = v
        return d

    return fn


def _link(kind: str):
    def fn(f: h5py.File) -> None:
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
            del f["docs/id_bytes"]
            lay = h5py.VirtualLayout(shape=(n,), dtype=np.uint8)
            lay[:] = h5py.VirtualSource("/etc/passwd", "x", shape=(n,))
            f.create_virtual_dataset("docs/id_bytes", lay)
        elif kind.startswith("hard "):  # "hard NEW -> EXISTING": a second hard link (a cycle when it points up)
            new, old = kind[5:].split(" -> ")
            f[new] = f[old]
        elif kind == "named datatype":
            f["docs/type"] = np.dtype("int64")

    return _edit(fn, docs=False)


def _manifest(edit):
    def craft_fn(root: str) -> None:
        body = _body(root)
        edit(body)
        _write_manifest(root, body)

    return craft_fn


def _manifest_value(path: tuple, text: str):
    """Manifest body value at ``path`` (keys and indexes) replaced by the JSON text ``text`` (``1e999``, ``NaN``...)."""
    def craft_fn(root: str) -> None:
        body = _body(root)
        node = body
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = "__CRAFTED__"
        _write_manifest_text(root, json.dumps(body, sort_keys=True).replace('"__CRAFTED__"', text))

    return craft_fn


def _manifest_drop(path: tuple):
    def edit(body):
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return _manifest(edit)


def _attr(key, value, seg: int = 0, *, obj: str = "/"):
    def fn(f: h5py.File) -> None:
        if value is None:
            del f[obj].attrs[key]
        else:
            f[obj].attrs[key] = value

    return _edit(fn, seg, docs=False)


# -- memory bombs: a small file declaring a huge dataset

_ZERO_CHUNKS: dict = {}


def _zlib_zeros(nbytes: int) -> bytes:
    import zlib

    if nbytes not in _ZERO_CHUNKS:
        _ZERO_CHUNKS[nbytes] = zlib.compress(bytes(nbytes), 9)
    return _ZERO_CHUNKS[nbytes]


def _declare(f: h5py.File, name: str, shape: tuple, dtype, how: str, prefix: np.ndarray) -> bytes:
    """Dataset ``name`` declared ``shape`` and stored ``how``; returns the bytes it now holds before its zeros.

    ``chunked``/``gzip``/``lzf``/``fletcher32``: chunked, ``prefix`` written, every other chunk never written
    (read back as zeros); ``contiguous``: never written at all; ``gzip-bomb``/``shuffle-gzip-bomb``: every
    chunk written, each a deflated run of zeros (about a thousandth of its size on disk).
    """
    row = int(np.dtype(dtype).itemsize * np.prod(shape[1:], dtype=np.int64))
    if how == "contiguous":
        f.create_dataset(name, shape, dtype)
        return b""
    bomb = how.endswith("-bomb")
    rows = max(1, (64 << 20 if bomb else 1 << 20) // row)
    kw = {"chunks": (min(rows, shape[0]), *shape[1:])}
    kw.update({"gzip": {"compression": "gzip"}, "lzf": {"compression": "lzf"}, "fletcher32": {"fletcher32": True},
               "gzip-bomb": {"compression": "gzip"}, "shuffle-gzip-bomb": {"compression": "gzip", "shuffle": True},
               "chunked": {}}[how])
    ds = f.create_dataset(name, shape, dtype, **kw)
    if bomb:
        chunk = _zlib_zeros(kw["chunks"][0] * row)
        for start in range(0, shape[0], kw["chunks"][0]):
            ds.id.write_direct_chunk((start,) + (0,) * (len(shape) - 1), chunk)
        return b""
    if prefix.size:
        ds[: prefix.shape[0]] = prefix
    return np.ascontiguousarray(prefix).tobytes()


def _bomb(name: str, how: str, nbytes: int = BOMB):
    """Segment 0's ``name`` declared ``nbytes`` (its data kept in front), the offsets that index it stretched to match."""
    ends = {"docs/id_bytes": "docs/id_offsets", "docs/metadata_bytes": "docs/metadata_offsets",
            "filters/f1/dict_bytes": "filters/f1/dict_offsets"}

    def craft_fn(root: str) -> None:
        path = _segments(root)[0]
        with h5py.File(path, "r+") as f:
            if name in f:
                data = f[name][()]
                del f[name]
            else:  # a dataset the format does not have, hashed whole like any other
                data = np.zeros(0, np.uint8)
            row = int(data.dtype.itemsize * np.prod(data.shape[1:], dtype=np.int64))
            rows = max(nbytes // row, data.shape[0] + 1)
            held = _declare(f, name, (rows, *data.shape[1:]), data.dtype, how, data)
            if name in ends:
                f[ends[name]][-1] = rows
        known = {name: _zeros_hash(held, rows * row)}
        _reseal(root, path, docs=False, known=known)

    return craft_fn


def _count_bomb(how: str, n: int = BOMB // 8):
    """Segment 0 says it holds ``n`` documents of one vector each (attributes and manifest agree), every
    dataset declared to match, none written: reading its offsets alone would take ``8 n`` bytes."""
    def craft_fn(root: str) -> None:
        path = _segments(root)[0]
        known = {}
        with h5py.File(path, "r+") as f:
            names = []
            f.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
            for name in names:
                ds = f[name]
                if ds.shape[:1] in ((f.attrs["n_docs"],), (f.attrs["n_vectors"],)):
                    length = n
                elif ds.shape[:1] in ((f.attrs["n_docs"] + 1,), (f.attrs["n_vectors"] + 1,)):
                    length = n + 1
                else:
                    continue
                shape, dtype = (length, *ds.shape[1:]), ds.dtype
                del f[name]
                _declare(f, name, shape, dtype, "contiguous" if name == layout.VECTORS else how, np.zeros(0, dtype))
                known[name] = "0" * 16  # hashing gigabytes of zeros here would prove nothing more
            f.attrs["n_docs"], f.attrs["n_vectors"] = n, n
        _reseal(root, path, docs=False, known=known)
        body = _body(root)
        body["segments"][0].update(n_docs=n, n_vectors=n, deletes=None)
        _write_manifest(root, body)

    return craft_fn


# -- files that are not regular files: FIFOs, devices, symbolic links

_TARGETS = {"segment": lambda r: _segments(r)[0], "deletion file": _deletes, "manifest": _latest,
            "next manifest": _next_manifest, "marker": lambda r: os.path.join(r, layout.MARKER)}


def _outside(root: str) -> str:
    """A folder beside the collection (outside it), made afresh."""
    out = root.rstrip("/") + ".outside"
    if os.path.lexists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    return out


def _unlink(path: str) -> None:
    if os.path.lexists(path):
        os.unlink(path)


def _special(target: str, kind: str):
    """The file ``target`` names replaced by ``kind``: fifo, a device (``dev M:N``), or a symbolic link (``link DEST``)."""
    def craft_fn(root: str) -> str | None:
        import stat

        path = _TARGETS[target](root)
        if kind == "fifo":
            _unlink(path)
            os.mkfifo(path)
        elif kind.startswith("dev "):
            major, minor = (int(x) for x in kind[4:].split(":"))
            keep = path + ".kept"
            if os.path.lexists(path):
                os.rename(path, keep)
            try:
                os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(major, minor))
            except PermissionError:
                if os.path.lexists(keep):
                    os.rename(keep, path)
                return f"skipped (creating a device needs root): {target} {kind}"
            _unlink(keep)
        else:
            dest = kind[5:]
            if dest == "copy outside":
                dest = os.path.join(_outside(root), os.path.basename(path))
                shutil.copyfile(path if os.path.exists(path) else _latest(root), dest)
            elif dest == "itself":
                dest = path
            _unlink(path)
            os.symlink(dest, path)
        return None

    return craft_fn


def _folder_link(sub: str):
    """Folder ``sub`` of the collection replaced by a link to a copy of it outside the collection."""
    def craft_fn(root: str) -> None:
        src = os.path.join(root, sub)
        dest = os.path.join(_outside(root), sub)
        shutil.copytree(src, dest)
        shutil.rmtree(src)
        os.symlink(dest, src)

    return craft_fn


def _plain(rel: str, kind: str):
    """An extra entry the reader never opens (garbage in ``tmp/``, a stray file in ``segments/``)."""
    def craft_fn(root: str) -> None:
        path = os.path.join(root, rel)
        _unlink(path)
        if kind == "fifo":
            os.mkfifo(path)
        else:
            os.symlink(kind, path)

    return craft_fn


# -- contents a checksum cannot vouch for: ids, metadata, filter columns, summaries, duplicates

def _strings(kind: str, fn, seg: int = 0):
    """Segment ``seg``'s ids (``kind="id"``) or metadata (``"metadata"``) as a list of bytes, rewritten by ``fn``."""
    def edit(f: h5py.File) -> None:
        raw = f[f"docs/{kind}_bytes"][()].tobytes()
        off = f[f"docs/{kind}_offsets"][()]
        items = fn([raw[a:b] for a, b in zip(off[:-1], off[1:])])
        new_off = np.zeros(len(items) + 1, np.int64)
        np.cumsum([len(x) for x in items], out=new_off[1:])
        _replace(f, f"docs/{kind}_bytes", np.frombuffer(b"".join(items), np.uint8))
        _replace(f, f"docs/{kind}_offsets", new_off)

    return _edit(edit, seg)


def _first(value: bytes):
    return lambda items: [value] + items[1:]


def _copy_segment(where: str):
    """A segment listed twice: its file copied under a new name (``where`` in the list), checksum and all."""
    def craft_fn(root: str) -> None:
        body = _body(root)
        src = body["segments"][1 if where != "with deletes" else 0]
        entry = dict(src, name="seg-00000000000dup1.h5")
        shutil.copyfile(os.path.join(root, layout.SEGMENTS, src["name"]), os.path.join(root, layout.SEGMENTS, entry["name"]))
        if where == "with deletes":
            d = dict(src["deletes"], name="seg-00000000000dup1-copy.del")
            folder = os.path.join(root, layout.DELETES)
            shutil.copyfile(os.path.join(folder, src["deletes"]["name"]), os.path.join(folder, d["name"]))
            entry["deletes"] = d
        if where == "all deleted":  # valid: a listed segment whose every row is deleted adds nothing
            import xxhash

            raw = np.packbits(np.ones(src["n_docs"], bool), bitorder="little").tobytes()
            with open(os.path.join(root, layout.DELETES, "seg-00000000000dup1-all.del"), "wb") as fh:
                fh.write(raw)
            entry["deletes"] = {"name": "seg-00000000000dup1-all.del", "count": src["n_docs"],
                                "checksum": f"{xxhash.xxh3_64_intdigest(raw):016x}"}
        body["segments"].insert(0 if where == "first" else len(body["segments"]), entry)
        _write_manifest(root, body)

    return craft_fn


def _overlap(ids: list[str]):
    """A new segment (written by colprune, so valid alone) holding ``ids``, appended to the manifest."""
    def craft_fn(root: str) -> None:
        other = root.rstrip("/") + ".other"
        if os.path.lexists(other):
            shutil.rmtree(other)
        rng = np.random.default_rng(5)
        with cp.Index.create(other, dim=DIM, signals=["cls"], summary_centroids=2) as index:
            embs = [rng.standard_normal((3, DIM)).astype(np.float32) for _ in ids]
            imps = [rng.random(3) for _ in ids]
            index.add(ids, embs, imps, metadata=[{"src": "f1.pdf", "page": 99} for _ in ids],
                      signals=[{"cls": i} for i in imps])
        entry = _body(other)["segments"][0]
        shutil.copyfile(os.path.join(other, layout.SEGMENTS, entry["name"]), os.path.join(root, layout.SEGMENTS, entry["name"]))
        shutil.rmtree(other)
        body = _body(root)
        body["segments"].append(entry)
        _write_manifest(root, body)

    return craft_fn


def _filter(group: str, part: str, value_fn):
    return _set(f"filters/{group}/{part}", value_fn)


def _swap_first_two(values: list[bytes]) -> list[bytes]:
    return [values[1], values[0]] + values[2:] if len(values) > 1 else values


def _dictionary(fn):
    """Filter ``src``'s dictionary (``filters/f1``) as a list of bytes, rewritten by ``fn``."""
    def edit(f: h5py.File) -> None:
        raw = f["filters/f1/dict_bytes"][()].tobytes()
        off = f["filters/f1/dict_offsets"][()]
        items = fn([raw[a:b] for a, b in zip(off[:-1], off[1:])])
        new_off = np.zeros(len(items) + 1, np.int64)
        np.cumsum([len(x) for x in items], out=new_off[1:])
        _replace(f, "filters/f1/dict_bytes", np.frombuffer(b"".join(items), np.uint8))
        _replace(f, "filters/f1/dict_offsets", new_off)

    return _edit(edit)


def _summary_counts(f: h5py.File) -> None:
    """One centroid moved from page 1 to page 0: valid CSR, but not min(summary_centroids, n_i) per page."""
    off = f["summary/offsets"][()]
    off[1] += 1 if off[2] - off[1] > 1 else -1
    f["summary/offsets"][...] = off


def _deletes_bytes(fn):
    """Segment 0's deletion bitmap rewritten by ``fn(raw) -> raw``, its checksum and count recomputed."""
    def craft_fn(root: str) -> None:
        import xxhash

        body = _body(root)
        d = body["segments"][0]["deletes"]
        path = os.path.join(root, layout.DELETES, d["name"])
        with open(path, "rb") as fh:
            raw = fn(fh.read())
        with open(path, "wb") as fh:
            fh.write(raw)
        bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[: body["segments"][0]["n_docs"]]
        d.update(checksum=f"{xxhash.xxh3_64_intdigest(raw):016x}", count=int(bits.sum()))
        _write_manifest(root, body)

    return craft_fn


def _sparse(target: str, size: int):
    """The file ``target`` names made ``size`` bytes long (a sparse file: zeros, nothing on disk)."""
    def craft_fn(root: str) -> None:
        path = _TARGETS[target](root)
        with open(path, "ab") as fh:
            fh.truncate(size)

    return craft_fn


def _text(target: str, text: str):
    """The file ``target`` names (over)written with ``text``."""
    def craft_fn(root: str) -> None:
        with open(_TARGETS[target](root), "w") as fh:
            fh.write(text)

    return craft_fn


def _nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def _structure_crafts(c: dict) -> None:
    big = [10**9, -1, -(10**9), 2**40, 2**62, 3]
    for name in ("offsets", "docs/id_offsets", "docs/metadata_offsets", "summary/offsets"):
        for pos in (0, 1, -1, 2):
            for v in big:
                c[f"{name}[{pos}]={v}"] = _set(name, _offsets([(pos, v)]))
        c[f"{name} reversed"] = _set(name, lambda d: d[::-1].copy())
        c[f"{name} float"] = _set(name, lambda d: d.astype(np.float64))
        c[f"{name} short"] = _set(name, lambda d: d[:-1].copy())
    c["vectors NaN"] = _set("vectors", lambda d: np.full_like(d, np.nan))
    c["vectors Inf in one row"] = _set("vectors", lambda d: np.where(np.arange(len(d))[:, None] == 2, np.inf, d).astype(d.dtype))
    c["importance wrong dtype"] = _set("importance", lambda d: d.astype(np.float64))
    c["positions short"] = _set("positions", lambda d: d[:-1].copy())
    c["positions beyond n_original"] = _set("positions", lambda d: d + 10**6)
    c["positions negative"] = _set("positions", lambda d: d - 10**6)
    c["n_original below the stored count"] = _set("docs/n_original", lambda d: np.zeros_like(d))
    c["grid 3 columns"] = _set("docs/grid", lambda d: np.zeros((d.shape[0], 3), np.int32))
    c["grid int64"] = _set("docs/grid", lambda d: d.astype(np.int64))
    c["vectors big-endian"] = _set("vectors", lambda d: d.astype(d.dtype.newbyteorder(">")))
    c["vectors 3-D"] = _set("vectors", lambda d: d.reshape(d.shape[0], 4, -1))
    c["patch_mask as strings"] = _set("patch_mask", lambda d: np.array([b"x"] * d.shape[0], "S1"))
    c["scales in a float16 segment"] = _edit(lambda f: f.create_dataset("scales", data=np.ones(len(f["vectors"]), np.float32)))
    c["rerank copy in a float16 segment"] = _edit(
        lambda f: f.create_dataset("rerank_vectors", data=np.zeros(f["vectors"].shape, np.float16)))
    c["signal added in the segment"] = _edit(
        lambda f: f.create_dataset("signals/extra", data=np.zeros(f["positions"].shape, np.float32)))
    c["signal removed from the segment"] = _edit(lambda f: f.__delitem__("signals/cls"))
    c["signal nested a level deeper"] = _edit(lambda f: f.move("signals/cls", "signals/deep/cls"))
    c["covers in an unmerged segment"] = _edit(lambda f: (
        f.create_dataset("covers/rows", data=f["positions"][()]),
        f.create_dataset("covers/offsets", data=np.arange(len(f["positions"]) + 1))))
    c["id bytes not UTF-8"] = _set("docs/id_bytes", lambda d: np.full_like(d, 0xFF))
    c["metadata not JSON"] = _set("docs/metadata_bytes", lambda d: np.full_like(d, ord("{")))
    c["checks group missing"] = _edit(lambda f: f.__delitem__("checks/aux"), docs=False)
    c["checks uint32"] = _edit(lambda f: _replace(f, "checks/meta", f["checks/meta"][()].astype(np.uint32)), docs=False)
    c["extra dataset of strings"] = _edit(lambda f: f.create_dataset("docs/notes", data=np.array([b"x" * 64] * 4)))
    c["extra dataset compound"] = _edit(lambda f: f.create_dataset("docs/pairs", data=np.zeros(4, "i4,f8")))
    c["extra dataset 3-D"] = _edit(lambda f: f.create_dataset("docs/cube", data=np.zeros((2, 2, 2), np.int8)))
    c["extra dataset gzip (small)"] = _edit(lambda f: f.create_dataset("docs/packed", data=np.arange(100), compression="gzip"))
    c["extra dataset, harmless"] = _edit(lambda f: f.create_dataset("docs/notes", data=np.arange(4)))  # valid: unknown data
    for kind in ("external-link", "soft-link", "external-storage", "virtual", "named datatype",
                 "hard docs/loop -> /", "hard filters/f0/up -> filters", "hard checks/root -> /", "hard summary/self -> summary",
                 "hard docs/alias -> offsets", "hard extra -> docs", "hard docs/vectors2 -> vectors",
                 "hard signals/again -> signals/cls"):
        c[kind] = _link(kind)


def _attr_crafts(c: dict) -> None:
    c["n_docs attr huge"] = _attr("n_docs", 10**12)
    c["n_vectors attr negative"] = _attr("n_vectors", -5)
    c["dim attr other"] = _attr("dim", 7)
    c["codec attr unknown"] = _attr("codec", "float8")
    c["format attr foreign"] = _attr("format", "not-colprune")
    c["n_docs attr float"] = _attr("n_docs", 12.0)
    c["n_docs attr string"] = _attr("n_docs", "12")
    c["n_docs attr array"] = _attr("n_docs", np.array([12, 12]))
    c["n_docs attr 1e308"] = _attr("n_docs", 1e308)
    c["n_vectors attr 2**62"] = _attr("n_vectors", 2**62)
    c["dim attr 0"] = _attr("dim", 0)
    c["dim attr 2**40"] = _attr("dim", 2**40)
    c["dim attr float"] = _attr("dim", 16.0)
    c["format attr array"] = _attr("format", np.array([b"colprune-segment"] * 2))
    c["format attr int"] = _attr("format", 3)
    c["format attr missing"] = _attr("format", None)
    c["format_version attr 5"] = _attr("format_version", 5)
    c["codec attr array"] = _attr("codec", np.array([b"float16"] * 3))
    c["summary_centroids attr 3"] = _attr("summary_centroids", 3)
    c["summary_centroids attr 0"] = _attr("summary_centroids", 0)
    c["summary_centroids attr -1"] = _attr("summary_centroids", -1)
    c["summary_centroids attr 2**40"] = _attr("summary_centroids", 2**40)
    c["summary_centroids attr float"] = _attr("summary_centroids", 2.0)
    c["filter field attr int"] = _attr("field", 5, obj="filters/f0")
    c["filter field attr array"] = _attr("field", np.array([b"page", b"src"]), obj="filters/f0")
    c["filter field attr 100 KB"] = _attr("field", "p" * 100_000, obj="filters/f0")
    c["filter field renamed to another field"] = _attr("field", "src", obj="filters/f0")
    c["filter field renamed to an unknown field"] = _attr("field", "pages", obj="filters/f0")
    c["filter field attr missing"] = _attr("field", None, obj="filters/f0")


def _record_crafts(c: dict) -> None:
    """Checksum records that are not what a writer writes (the manifest's checksum made to match them)."""
    def record(text_fn):
        def craft_fn(root: str) -> None:
            import xxhash

            path = _segments(root)[0]
            with h5py.File(path, "r+") as f:
                text = text_fn(f.attrs["checksums"])
                if text is None:
                    del f.attrs["checksums"]
                else:
                    f.attrs["checksums"] = text
            text = text or ""
            body = _body(root)
            body["segments"][0]["checksum"] = f"{xxhash.xxh3_64_intdigest(text.encode()):016x}"
            _write_manifest(root, body)

        return craft_fn

    c["checksums attr 1 MB"] = record(lambda t: json.dumps({**json.loads(t), **{f"x{i:06d}": "0" * 16 for i in range(40_000)}}))
    c["checksums attr nested 5,000 deep"] = record(lambda t: _nested(5000))
    c["checksums attr non-string hashes"] = record(lambda t: json.dumps({k: 5 for k in json.loads(t)}))
    c["checksums attr not JSON"] = record(lambda t: t[:-3])
    c["checksums attr a list"] = record(lambda t: "[]")
    c["checksums attr missing"] = record(lambda t: None)
    c["checksums attr without the offsets"] = record(
        lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "offsets"}))


def _bomb_crafts(c: dict) -> None:
    names = ["docs/id_bytes", "docs/metadata_bytes", "summary/codes", "summary/scales", "summary/offsets",
             "filters/f1/dict_bytes", "filters/f1/dict_offsets", "filters/f0/num", "filters/f0/codes", "docs/extra",
             "checks/meta", "docs/n_original", "offsets", "importance"]
    for name in names:
        for how in ("chunked", "contiguous", "gzip", "gzip-bomb", "lzf", "fletcher32"):
            c[f"bomb {name} 3 GiB {how}"] = _bomb(name, how)
    for name in ("docs/id_bytes", "docs/metadata_bytes", "summary/codes", "docs/extra", "filters/f1/dict_bytes"):
        c[f"bomb {name} 4 MiB chunked"] = _bomb(name, "chunked", 4 << 20)  # small, but more than the file stores
        c[f"bomb {name} 1 GiB shuffle-gzip-bomb"] = _bomb(name, "shuffle-gzip-bomb", GIB)
    for how in ("chunked", "gzip", "contiguous"):
        c[f"bomb counts 400M docs {how}"] = _count_bomb(how)


def _file_crafts(c: dict) -> None:
    for target in _TARGETS:
        c[f"{target} is a FIFO"] = _special(target, "fifo")
        for dev in ("1:5", "1:3", "1:9"):
            c[f"{target} is device {dev}"] = _special(target, f"dev {dev}")
        for dest in ("/etc/passwd", "copy outside", "/dev/zero", "/nonexistent/target", "itself"):
            c[f"{target} links to {dest}"] = _special(target, f"link {dest}")
    for sub in (layout.SEGMENTS, layout.MANIFESTS, layout.DELETES):
        c[f"{sub}/ links to a copy outside"] = _folder_link(sub)
    # entries a reader never opens: valid
    c["FIFO in tmp/"] = _plain(os.path.join(layout.TMP, "w-0123"), "fifo")
    c["FIFO in segments/ named by no manifest"] = _plain(os.path.join(layout.SEGMENTS, "seg-stray.h5"), "fifo")
    c["LOCK links to /etc/passwd"] = _plain(layout.LOCK, "/etc/passwd")
    c["link in tmp/ to /"] = _plain(os.path.join(layout.TMP, "up"), "/")
    c["manifest 2 GiB (sparse)"] = _sparse("manifest", 2 * GIB)
    c["next manifest 300 MiB (sparse)"] = _sparse("next manifest", 300 << 20)
    c["marker 1 GiB (sparse)"] = _sparse("marker", GIB)
    c["deletion file 2 GiB (sparse)"] = _sparse("deletion file", 2 * GIB)
    c["deletion bitmap a byte long"] = _deletes_bytes(lambda raw: raw + b"\0")
    c["deletion bitmap pad bits set"] = _deletes_bytes(lambda raw: raw[:-1] + bytes([raw[-1] | 0xF0]))  # valid: ignored bits


def _manifest_crafts(c: dict) -> None:
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
    for name in ("..", ".", "", "a/b", "x" * 300, "seg\x00.del"):
        c[f"manifest deletes named {name[:12]!r}"] = _manifest(
            lambda b, n=name: b["segments"][0]["deletes"].__setitem__("name", n))
    for name in ("x" * 300 + ".h5", "", ".h5", "seg.h5/..", "seg\n.h5"):
        c[f"manifest segment named {name[:12]!r}"] = _manifest(lambda b, n=name: b["segments"][1].__setitem__("name", n))
    values = {("segments", 0, "n_docs"): ["1e999", "-1e999", "NaN", '"12"', "12.0", "true", "null", str(2**70), "[]"],
              ("segments", 0, "n_vectors"): ["1e999", '"7"', str(2**64), "1.5"],
              ("segments", 0, "deletes", "count"): ["1e999", "-1", '"1"', "1.0"],
              ("segments", 0, "checksum"): ["5", '"abc"', '"ABCDEF0123456789"', "null"],
              ("segments", 0, "deletes", "checksum"): ["5", '"0"'],
              ("dim",): ["1e999", '"16"', "16.0", "true", "0", str(2**40)],
              ("version",): ['"5"', "5.0", "1e999"], ("format_version",): ['"3"', "3.0", "5"],
              ("format",): ["null", '"colprune-segment"'], ("codec",): ["null", '"float64"', "16"],
              ("summary_centroids",): ["1e999", "-1", '"2"'], ("rerank",): ['"no"', "1"], ("merged",): ['"no"', "0"],
              ("signals",): ['"cls"', '["cls", "cls"]', '["a/b"]', "[1]", "null", '["cls", "other"]', "[]"],
              ("pruner",): ['"none"', '{"name": 1}', '{"name": "none", "params": [1]}'],
              ("encoder",): ["5"], ("skipped",): ["[]", '{"a": 1}'],
              ("segments", 0): ["[]", "5", "null", '"seg"'], ("segments", 0, "deletes"): ["[]", '"x"', "5"],
              ("rerank_or_merged_agree",): []}
    for path, texts in values.items():
        for text in texts:
            c[f"manifest {'.'.join(map(str, path))} = {text[:24]}"] = _manifest_value(path, text)
    c["manifest merged true"] = _manifest(lambda b: b.__setitem__("merged", True))
    c["manifest rerank true"] = _manifest(lambda b: b.__setitem__("rerank", True))
    c["manifest summary_centroids other"] = _manifest(lambda b: b.__setitem__("summary_centroids", 4))
    c["manifest n_vectors below n_docs"] = _manifest(lambda b: b["segments"][1].__setitem__("n_vectors", 1))
    c["manifest deletion file named twice"] = _manifest(
        lambda b: b["segments"][1].__setitem__("deletes", b["segments"][0]["deletes"]))
    for path in [("format",), ("format_version",), ("version",), ("dim",), ("codec",), ("rerank",), ("merged",),
                 ("signals",), ("segments",), ("segments", 0, "name"), ("segments", 0, "n_docs"),
                 ("segments", 0, "n_vectors"), ("segments", 0, "checksum"), ("segments", 0, "deletes", "name"),
                 ("segments", 0, "deletes", "count"), ("segments", 0, "deletes", "checksum")]:
        c[f"manifest without {'.'.join(map(str, path))}"] = _manifest_drop(path)

    def doc(text: str):
        def craft_fn(root: str) -> None:
            with open(_latest(root), "w") as fh:
                fh.write(text)

        return craft_fn

    c["manifest body a list"] = doc('{"body": [], "checksum": "0000000000000000"}')
    c["manifest without a checksum"] = lambda r: doc(json.dumps({"body": _body(r)}))(r)
    c["manifest checksum a number"] = lambda r: doc(json.dumps({"body": _body(r), "checksum": 5}))(r)
    c["manifest a list"] = doc("[1, 2, 3]")
    c["manifest a string"] = doc('"colprune"')
    c["manifest empty"] = doc("")
    c["manifest nested 100,000 deep"] = doc(_nested(100_000))
    c["manifest nested 100,000 deep objects"] = doc('{"a":' * 100_000 + "1" + "}" * 100_000)
    c["manifest pruner params nested 100,000 deep"] = _manifest_value(("pruner",), '{"name": "none", "params": {"x": '
                                                                      + _nested(100_000) + "}}")
    c["manifest skipped nested 200 deep"] = _manifest_value(("skipped",), '{"a": ' + _nested(200) + "}")
    c["manifest brackets in strings (valid)"] = _manifest_value(("skipped",), json.dumps({"[" * 500: "{" * 500}))
    c["manifest 1 MB of spaces (valid)"] = lambda r: _write_manifest_text(r, json.dumps(_body(r)) + " " * (1 << 20))
    c["marker nested 2,000 deep"] = _text("marker", _nested(2000))
    c["marker format_version 1e999"] = _text("marker", '{"format": "colprune-index", "format_version": 1e999}')
    c["marker a list"] = _text("marker", "[3]")
    c["next manifest nested 100,000 deep"] = _text("next manifest", _nested(100_000))


def _content_crafts(c: dict) -> None:
    c["summary codes wide"] = _set("summary/codes", lambda d: np.zeros((d.shape[0], d.shape[1] + 1), np.int8))
    c["summary codes one row more"] = _set("summary/codes", lambda d: np.zeros((d.shape[0] + 1, d.shape[1]), np.int8))
    for dt in ("int16", "float32", "uint8", "int64"):
        c[f"summary codes {dt}"] = _set("summary/codes", lambda d, dt=dt: d.astype(dt))
    for dt in ("float64", "float16", "int8"):
        c[f"summary scales {dt}"] = _set("summary/scales", lambda d, dt=dt: d.astype(dt))
    c["summary scales NaN"] = _set("summary/scales", lambda d: np.full_like(d, np.nan))
    c["summary scales 0"] = _set("summary/scales", lambda d: np.zeros_like(d))
    c["summary scales negative"] = _set("summary/scales", lambda d: -d)
    c["summary scales Inf"] = _set("summary/scales", lambda d: np.full_like(d, np.inf))
    c["summary offsets int32"] = _set("summary/offsets", lambda d: d.astype(np.int32))
    c["summary counts not min(centroids, n)"] = _edit(_summary_counts)
    c["summary removed"] = _edit(lambda f: f.__delitem__("summary"))
    # filter columns that disagree with the metadata they index (checksums valid)
    c["filter page num all 3"] = _filter("f0", "num", lambda d: np.full_like(d, 3.0))
    c["filter page num shifted"] = _filter("f0", "num", lambda d: np.roll(d, 1))
    c["filter page num NaN"] = _filter("f0", "num", lambda d: np.full_like(d, np.nan))
    c["filter page num float32"] = _filter("f0", "num", lambda d: d.astype(np.float32))
    c["filter page num one more"] = _filter("f0", "num", lambda d: np.r_[d, 0.0])
    c["filter src codes rotated"] = _filter("f1", "codes", lambda d: np.roll(d, 1))
    c["filter src codes -5"] = _filter("f1", "codes", lambda d: np.full_like(d, -5))
    c["filter src codes out of range"] = _filter("f1", "codes", lambda d: np.full_like(d, 10**6))
    c["filter src codes int64"] = _filter("f1", "codes", lambda d: d.astype(np.int64))
    c["filter src codes all -1"] = _filter("f1", "codes", lambda d: np.full_like(d, -1))
    c["filter src dictionary renamed"] = _dictionary(lambda v: [b"f9.pdf" if x == b"f1.pdf" else x for x in v])
    c["filter src dictionary unsorted"] = _dictionary(_swap_first_two)
    c["filter src dictionary repeated"] = _dictionary(lambda v: v[:1] * len(v))
    c["filter src dictionary not UTF-8"] = _dictionary(lambda v: [b"\xff\xfe"] + v[1:])
    c["filter src dictionary one more"] = _dictionary(lambda v: v + [b"zz.pdf"])
    c["filter group removed"] = _edit(lambda f: f.__delitem__("filters/f0"))
    c["filter group for no field"] = _edit(
        lambda f: (f.copy("filters/f0", "filters/f9"), f["filters/f9"].attrs.__setitem__("field", "x")))
    c["filters a dataset"] = _edit(lambda f: (f.__delitem__("filters"), f.create_dataset("filters", data=np.arange(3))))
    c["filter group a dataset"] = _edit(
        lambda f: (f.__delitem__("filters/f0"), f.create_dataset("filters/f0", data=np.arange(3))))
    c["filter without its dictionary offsets"] = _edit(lambda f: f.__delitem__("filters/f1/dict_offsets"))
    # ids against the writer's rules (each segment's ids, checksums valid)
    for label, value in (("NUL", b"p\x00x"), ("LF", b"p\nx"), ("CR", b"p\rx"), ("1,025 bytes", b"p" * 1025),
                         ("5,000 bytes", b"q" * 5000), ("a lone surrogate", b"p\xed\xa0\x80"), ("empty", b"")):
        c[f"id with {label}"] = _strings("id", _first(value))
    c["id repeated in its segment"] = _strings("id", lambda items: [items[1]] + items[1:])
    c["id live in another segment too"] = _strings("id", _first(b"p1-0"), seg=2)
    c["id of a deleted page in another segment"] = _strings("id", _first(b"p0-3"), seg=1)  # valid: p0-3 was deleted
    c["id with a tab (valid)"] = _strings("id", _first(b"p\tx"))
    # metadata against the writer's rules
    for label, value in (("a list", b"[]"), ("a number", b"1"), ("a string", b'"x"'), ("null", b"null"), ("true", b"true"),
                         ("NaN", b'{"a": NaN}'), ("Infinity", b'{"a": Infinity}'), ("-Infinity", b'{"a": -Infinity}'),
                         ("nested 100,000 deep", _nested(100_000).encode()),
                         ("objects nested 5,000 deep", ('{"a":' * 5000 + "1" + "}" * 5000).encode()),
                         ("trailing garbage", b"{} x"), ("truncated", b"{"), ("not UTF-8", b"\xff\xfe")):
        c[f"metadata {label}"] = _strings("metadata", _first(value))
    # the same pages twice
    c["segment listed twice (copy at the end)"] = _copy_segment("end")
    c["segment listed twice (copy first)"] = _copy_segment("first")
    c["segment listed twice (with its deletions)"] = _copy_segment("with deletes")
    c["segment listed twice (copy all deleted)"] = _copy_segment("all deleted")  # valid
    c["segment overlapping another's live ids"] = _overlap(["new-0", "p1-3", "new-1"])
    c["segment re-adding a deleted page"] = _overlap(["p0-3"])  # valid: like an upsert


def _crafts() -> dict:
    c: dict = {}
    for part in (_structure_crafts, _attr_crafts, _record_crafts, _bomb_crafts, _file_crafts, _manifest_crafts,
                 _content_crafts):
        part(c)
    return c


CRAFTS = _crafts()

#: crafts that leave a valid collection (possibly another one: other ids, more pages): any outcome but a
#: failure of the reader (RAW, CRASH, HANG, MEMORY); every other craft must end in a colprune error
VALID_CRAFTS = frozenset({
    "extra dataset, harmless", "FIFO in tmp/", "FIFO in segments/ named by no manifest", "LOCK links to /etc/passwd",
    "link in tmp/ to /", "deletion bitmap pad bits set", "manifest brackets in strings (valid)",
    "manifest 1 MB of spaces (valid)", "id of a deleted page in another segment", "id with a tab (valid)",
    "segment listed twice (copy all deleted)", "segment re-adding a deleted page",
    "docs/id_offsets[1]=3",  # the ids cut elsewhere: "p0-", "0p0-1"... other ids, each valid
})


def craft(root: str, name: str) -> str | None:
    """Apply craft ``name`` to the collection at ``root``; returns a label when it could not be made (skipped)."""
    out = CRAFTS[name](root)
    return out if isinstance(out, str) else None


def copy_of(reference: str, dest: str) -> str:
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    shutil.copytree(reference, dest)
    return dest


# -- residual collections (format 4): crafted codebooks, codes and inverted lists
#
# Each craft takes a fresh copy of :func:`make_residual_reference` and returns the path of the file it
# damaged: reading the collection must raise a colprune error naming that file.

RESIDUAL_DIM = 16


def make_residual_reference(path: str) -> None:
    """A small residual2 collection: 2 segments, a deletion, metadata, a codebook."""
    rng = np.random.default_rng(12)
    with cp.Index.create(path, dim=RESIDUAL_DIM, dtype="residual2") as index:
        for s in range(2):
            ids = [f"r{s}-{i}" for i in range(10)]
            embs = [rng.standard_normal((int(rng.integers(2, 9)), RESIDUAL_DIM)).astype(np.float32) for _ in ids]
            index.add(ids, embs, metadata=[{"src": f"f{i % 3}.pdf"} for i in range(10)])
        index.delete(["r0-3"])


def _codebook_path(root: str) -> str:
    return os.path.join(root, layout.CODEBOOKS, _body(root)["codebook"]["name"])


def _reseal_codebook(root: str) -> None:
    """Recompute the codebook's checksum record from what it holds, and the manifest's checksum of it."""
    import xxhash

    path = _codebook_path(root)
    with h5py.File(path, "r+") as f:
        record = json.dumps({n: f"{hash_bytes(np.ascontiguousarray(f[n][()])):016x}" for n in f}, sort_keys=True)
        f.attrs[layout.A_CHECKS] = record
    body = _body(root)
    body["codebook"]["checksum"] = f"{xxhash.xxh3_64_intdigest(record.encode()):016x}"
    _write_manifest(root, body)


def _codebook_edit(fn, *, reseal: bool = True):
    def craft_fn(root: str) -> str:
        path = _codebook_path(root)
        with h5py.File(path, "r+") as f:
            fn(f)
        if reseal:
            _reseal_codebook(root)
        return path

    return craft_fn


def _segment_edit(fn, seg: int = 0):
    def craft_fn(root: str) -> str:
        path = _segments(root)[seg]
        with h5py.File(path, "r+") as f:
            fn(f)
        _reseal(root, path)
        return path

    return craft_fn


def _set_data(name: str, value_fn):
    def fn(f: h5py.File) -> None:
        data = f[name][()]
        new = np.asarray(value_fn(data.copy()))
        if new.shape == data.shape and new.dtype == data.dtype:
            f[name][...] = new
        else:
            _replace(f, name, new)

    return fn


def _first_set(value_fn):
    def fn(d):
        d.flat[0] = value_fn(d)
        return d

    return fn


def _unlink_codebook(root: str) -> str:
    path = _codebook_path(root)
    os.unlink(path)
    return path


def _codebook_link(root: str) -> str:
    path = _codebook_path(root)
    os.unlink(path)
    os.symlink("/etc/passwd", path)
    return path


def _codebooks_folder_link(root: str) -> str:
    folder = os.path.join(root, layout.CODEBOOKS)
    outside = _outside(root)
    shutil.copytree(folder, os.path.join(outside, "codebooks"))
    shutil.rmtree(folder)
    os.symlink(os.path.join(outside, "codebooks"), folder)
    return folder


def _manifest_codebook(value):
    def craft_fn(root: str) -> str:
        body = _body(root)
        body["codebook"] = value(body["codebook"])
        _write_manifest(root, body)
        return _latest(root)

    return craft_fn


def _residual_crafts() -> dict:
    c: dict = {}
    c["codebook byte flipped (not resealed)"] = _codebook_edit(_set_data(layout.CB_WEIGHTS, lambda w: w + 1), reseal=False)
    c["codebook n_centroids attr K - 1"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_N_CENTROIDS,
                                                                                         f.attrs[layout.A_N_CENTROIDS] - 1))
    c["codebook n_centroids attr 70000"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_N_CENTROIDS, 70000))
    c["codebook dim attr 8"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_DIM, 8))
    c["codebook nbits attr 4"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_NBITS, 4))
    c["codebook centroids one row short"] = _codebook_edit(_set_data(layout.CB_CENTROIDS, lambda x: x[:-1]))
    c["codebook weights float64"] = _codebook_edit(_set_data(layout.CB_WEIGHTS, lambda x: x.astype(np.float64)))
    c["codebook NaN centroid"] = _codebook_edit(_set_data(layout.CB_CENTROIDS, _first_set(lambda d: np.nan)))
    c["codebook cutoffs unsorted"] = _codebook_edit(_set_data(layout.CB_CUTOFFS, lambda x: x[:, ::-1].copy()))
    c["codebook train_error NaN"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_TRAIN_ERROR, np.nan))
    c["codebook format attr"] = _codebook_edit(lambda f: f.attrs.__setitem__(layout.A_FORMAT, "colprune-segment"))
    c["codebook extra dataset"] = _codebook_edit(lambda f: f.create_dataset("extra", data=np.zeros(3)))
    c["codebook missing"] = _unlink_codebook
    c["codebook links to /etc/passwd"] = _codebook_link
    c["codebooks/ links to a copy outside"] = _codebooks_folder_link
    c["manifest names no codebook"] = _manifest_codebook(lambda b: None)
    c["manifest codebook name ../x.h5"] = _manifest_codebook(lambda b: {**b, "name": "../x.h5"})
    c["manifest codebook checksum of another"] = lambda root: (_manifest_codebook(lambda b: {**b, "checksum": "0" * 16})(root)
                                                               and _codebook_path(root))  # the file that disagrees
    c["codes[0] = 32768 (>= K)"] = _segment_edit(_set_data(layout.CODES, _first_set(lambda d: 1 << 15)))
    c["codes uint32"] = _segment_edit(_set_data(layout.CODES, lambda d: d.astype(np.uint32)))
    c["codes missing"] = _segment_edit(lambda f: f.__delitem__(layout.CODES))
    c["ivf/docs[0] = n_docs"] = _segment_edit(_set_data(layout.IVF_DOCS, _first_set(lambda d: 10)))
    c["ivf/docs[0] = -1"] = _segment_edit(_set_data(layout.IVF_DOCS, _first_set(lambda d: -1)))
    c["ivf/offsets decreasing"] = _segment_edit(_set_data(layout.IVF_OFFSETS, lambda d: d[::-1].copy()))
    c["ivf/offsets one short"] = _segment_edit(_set_data(layout.IVF_OFFSETS, lambda d: d[:-1]))
    c["ivf/docs a list emptied (valid structure, wrong lists)"] = _segment_edit(_set_data(
        layout.IVF_OFFSETS, lambda d: np.r_[d[0], d[2:], d[-1]].astype(np.int64) if len(d) > 2 else d))
    c["segment names another codebook"] = _segment_edit(lambda f: f.attrs.__setitem__(layout.A_CODEBOOK, "cb-other.h5"))
    c["segment without codebook attr"] = _segment_edit(lambda f: f.attrs.__delitem__(layout.A_CODEBOOK))
    c["segment format_version 3"] = _segment_edit(lambda f: f.attrs.__setitem__(layout.A_FORMAT_VERSION, 3))
    return c


RESIDUAL_CRAFTS = _residual_crafts()
