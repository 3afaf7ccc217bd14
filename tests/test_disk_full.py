"""A full disk (or quota, file size limit, I/O error) during any write: a ``WriteError`` saying why, how
many bytes and where; the collection at its last commit; the process usable (no HDF5 handle touched
after the error: no segfault); a later write with space succeeds in the same process.

Faults are real where the kernel allows it without root: a subprocess under ``RLIMIT_FSIZE`` (with
``SIGXFSZ`` ignored every write past the limit fails with ``EFBIG``), and a tiny tmpfs in a user
namespace when ``unshare`` may make one (skipped otherwise); ``ENOSPC`` / ``EDQUOT`` / ``EIO`` are
injected at the one seam segment bytes go through (``os.pwrite`` of ``SegmentFile``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import colprune as cp
from colprune.errors import WriteError
from colprune.index import manifest as M
from colprune.index.collection import MergeSkippedWarning

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX resource limits")

DIM = 16


def pages(start: int, n: int, rows: int = 20):
    ids = [f"p{i}" for i in range(start, start + n)]
    embs = [np.random.default_rng(i).standard_normal((rows, DIM)).astype(np.float32) for i in range(start, start + n)]
    return ids, embs


def make(path, n: int = 12) -> None:
    with cp.Index.create(path, dim=DIM) as index:
        index.add(*pages(0, n // 2))
        index.add(*pages(n // 2, n - n // 2))


def no_stray_files(path) -> None:
    """Nothing a failed write made is left: tmp/ empty, every segment and deletion file named by a kept manifest."""
    assert os.listdir(os.path.join(path, "tmp")) == []
    named = set()
    for v in range(M.latest_version(str(path)) - M.KEEP_MANIFESTS + 1, M.latest_version(str(path)) + 1):
        try:
            body = M.read_manifest(str(path), v)
        except Exception:  # noqa: BLE001 - collected already
            continue
        named |= {s["name"] for s in body["segments"]} | {s["deletes"]["name"] for s in body["segments"] if s["deletes"]}
    assert set(os.listdir(os.path.join(path, "segments"))) | set(os.listdir(os.path.join(path, "deletes"))) <= named


# -- every write path under a file size limit, in a subprocess -------------------------------------

LIMITED = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys, warnings
    import numpy as np
    import colprune as cp
    from colprune.errors import WriteError

    path, out = sys.argv[1], sys.argv[2]
    DIM = 16

    def pages(start, n, rows=20):
        return ([f"p{i}" for i in range(start, start + n)],
                [np.random.default_rng(i).standard_normal((rows, DIM)).astype(np.float32) for i in range(start, start + n)])

    def limit(n):
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, the process lives
    results = []

    def attempt(label, fn):
        try:
            fn()
            results.append([label, "ok", None, None])
        except WriteError as e:
            results.append([label, "WriteError", e.errno, str(e)])
        except Exception as e:
            results.append([label, "RAW " + type(e).__name__, getattr(e, "errno", None), str(e)[:300]])

    index = cp.Index.open(path, mode="a")
    limit(4096)  # a segment of 10 pages of 20 x 16 float16 vectors is ~7 KB: refused; manifests fit
    for r in range(6):  # repeated failing writes in one process: never a crash
        attempt(f"add {r}", lambda: index.add(*pages(100 + 10 * r, 10)))
    attempt("upsert", lambda: index.upsert(*pages(0, 10)))
    index.delete(["p0"])  # a deletion file and a manifest fit under the limit
    attempt("compact", index.compact)
    attempt("summarize", lambda: index.summarize(2))
    attempt("copy_to", lambda: index.copy_to(path + "-copy"))
    attempt("derive", lambda: index.derive(path + "-derived", "none", dtype="int8"))
    attempt("overwrite", lambda: index.copy_to(path + "-other", overwrite=True))
    limit(200)  # now manifests fail too
    attempt("delete", lambda: index.delete(["p1"]))
    attempt("record_skipped", lambda: index.record_skipped({"x.pdf": "why"}))
    attempt("create", lambda: cp.Index.create(path + "-new", dim=DIM).close())
    limit(resource.RLIM_INFINITY)
    attempt("add after", lambda: index.add(*pages(500, 3)))  # the same index goes on
    index.close()
    with cp.Index.open(path, mode="a") as again:  # and a fresh writer
        attempt("fresh writer", lambda: again.add(*pages(600, 2)))
    with open(out, "w") as fh:
        json.dump(results, fh)
    """
)


def test_file_size_limit_on_every_write_path(tmp_path):
    path = tmp_path / "pages"
    make(path)
    with cp.Index.open(path) as index:
        before = index.ids
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(path), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode} (-11/139: a segfault): {proc.stderr[-3000:]}"
    results = {label: (kind, code, msg) for label, kind, code, msg in json.loads(out.read_text())}
    for label in ("add 0", "add 5", "upsert", "compact", "copy_to", "derive", "overwrite", "delete", "record_skipped",
                  "create"):
        kind, code, msg = results[label]
        assert kind == "WriteError" and code == errno.EFBIG, (label, kind, msg)
        assert "file too large writing" in msg and "ulimit -f" in msg and str(path.parent) in msg, msg
    assert "needed ~" in results["add 0"][2] and "free on" in results["add 0"][2]
    assert results["summarize"][0] in ("WriteError", "ok")
    assert results["add after"][0] == "ok" and results["fresh writer"][0] == "ok"
    with cp.Index.open(path) as index:
        index.verify()
        assert index.ids == [i for i in before if i != "p0"] + ["p500", "p501", "p502", "p600", "p601"]
    no_stray_files(path)
    # the failed copies left nothing: no partial collection, no hidden temporary folder
    assert sorted(os.listdir(tmp_path)) == ["out.json", "pages"]


# -- ENOSPC / EDQUOT / EIO at the segment seam, in this process ----------------------------------------

def failing_pwrite(monkeypatch, code: int, *, after: int = 0, fds: set | None = None):
    """``os.pwrite`` that fails with ``code`` once ``after`` bytes went through (only on ``fds`` when given)."""
    real = os.pwrite
    seen = {"bytes": 0}

    def pwrite(fd, data, offset):
        if fds is not None and fd not in fds:
            return real(fd, data, offset)
        if seen["bytes"] >= after:
            raise OSError(code, os.strerror(code))
        n = real(fd, data, offset)
        seen["bytes"] += n
        return n

    monkeypatch.setattr(os, "pwrite", pwrite)


@pytest.mark.parametrize("code,cause", [(errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk quota exceeded"),
                                        (errno.EIO, "I/O error")])
def test_injected_errors_are_write_errors(tmp_path, monkeypatch, code, cause):
    path = tmp_path / "pages"
    make(path)
    with cp.Index.open(path, mode="a") as index:
        ids = index.ids
        for after in (0, 3000, 10**9 if code == errno.EIO else 5000):  # at the start, midway, (EIO: none)
            with monkeypatch.context() as m:
                failing_pwrite(m, code, after=after)
                if after == 10**9:
                    index.add(*pages(100, 10))
                    continue
                with pytest.raises(WriteError) as e:
                    index.add(*pages(100, 10))
            err = e.value
            assert isinstance(err, OSError) and err.errno == code and err.path == str(path)
            assert err.needed and err.needed >= 10 * 20 * DIM * 2
            assert str(err).startswith(f"{cause} writing segment seg-") and f"of {path}" in str(err)
            assert index.ids == ids
            no_stray_files(path)
        index.add(*pages(200, 2))  # the same writer goes on
        assert index.ids[-2:] == ["p200", "p201"]
    with cp.Index.open(path) as index:
        index.verify()


def test_cli_exit_status_of_a_write_error(tmp_path, monkeypatch, capsys):
    from colprune.cli import main

    path = tmp_path / "pages"
    make(path)
    with cp.Index.open(path, mode="a") as index:
        index.delete(["p0", "p1"])
    failing_pwrite(monkeypatch, errno.ENOSPC)
    assert main(["compact", str(path)]) == 7
    err = capsys.readouterr().err
    assert err.startswith("colprune compact: error: disk full writing segment") and "free space" in err
    assert err.count("\n") == 1


def test_a_merge_that_cannot_be_written_leaves_the_commit(tmp_path, monkeypatch):
    from colprune.index import segment_writer

    path = tmp_path / "pages"
    with cp.Index.create(path, dim=DIM) as index:
        for s in range(7):  # 7 small segments: the 8th commit merges them
            index.add(*pages(10 * s, 2))
        opened = []
        real = segment_writer.SegmentFile.__init__

        def remember(self, p):
            real(self, p)
            opened.append(self.fd)

        monkeypatch.setattr(segment_writer.SegmentFile, "__init__", remember)
        monkeypatch.setattr(os, "pwrite", _fail_after_first_file(opened))
        with pytest.warns(MergeSkippedWarning, match="the pages are committed, but merging small segments was not: disk full"):
            index.add(*pages(70, 2))
        assert len(index) == 16 and len(index.snapshot().segments) == 8
        monkeypatch.undo()
        index.add(*pages(80, 2))  # the next commit merges
        assert len(index) == 18 and len(index.snapshot().segments) < 8
    no_stray_files(path)


def _fail_after_first_file(opened: list):
    real = os.pwrite

    def pwrite(fd, data, offset):
        if opened and fd != opened[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    return pwrite


# -- a real full disk: a tiny tmpfs in a user namespace, where the kernel allows one -----------------

FILL = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import colprune as cp
    from colprune.errors import WriteError

    root = sys.argv[1]
    path = os.path.join(root, "pages")
    filler = os.path.join(root, "filler")
    with open(filler, "wb") as fh:  # room to give back later
        fh.write(b"x" * (1 << 20))
    rng = np.random.default_rng(0)
    outcomes = {}
    index = cp.Index.create(path, dim=64)
    n = 0
    for t in range(40):  # fill the disk, then keep failing: adds, deletes, compactions
        try:
            k = int(rng.integers(1, 12))
            index.add([f"p{n + i}" for i in range(k)],
                      [rng.standard_normal((int(rng.integers(50, 400)), 64)).astype(np.float32) for _ in range(k)])
            n += k
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except WriteError as e:
            outcomes["WriteError"] = outcomes.get("WriteError", 0) + 1
            assert "disk full" in str(e) and e.needed, str(e)
        if t % 5 == 4:
            for fn in (lambda: index.delete(index.ids[:3]), index.compact):
                try:
                    fn()
                except WriteError:
                    outcomes["WriteError"] += 1
    ids = index.ids
    os.unlink(filler)
    index.add(["after"], [np.ones((4, 64), np.float32)])  # space again: the same writer goes on
    index.close()
    with cp.Index.open(path) as again:  # the tmpfs goes with this process: check here
        again.verify()
        assert again.ids == ids + ["after"]
    assert os.listdir(os.path.join(path, "tmp")) == []
    print(json.dumps({"outcomes": outcomes, "ids": ids}))
    """
)


def _tmpfs_available() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=1m tmpfs /tmp"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _tmpfs_available(), reason="no tmpfs: unprivileged user and mount namespaces are not allowed here")
def test_a_full_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f'mount -t tmpfs -o size=4m tmpfs "{mnt}" && exec "{sys.executable}" -c "$0" "{mnt}"'
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, FILL],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"rc {proc.returncode} (-11/139: a segfault): {proc.stderr[-3000:]}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["outcomes"].get("WriteError", 0) >= 3 and res["outcomes"].get("ok", 0) >= 1, res
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
