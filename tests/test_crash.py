"""A writer killed with SIGKILL in the middle of ``add`` loses nothing it committed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import colprune as cp

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")

WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import colprune as cp

    path, start = sys.argv[1], int(sys.argv[2])

    def page(i):
        rng = np.random.default_rng(i)
        n = 200 + i % 300
        return rng.standard_normal((n, 64)).astype(np.float32), rng.random(n)

    index = cp.Index.open(path, mode="a") if os.path.exists(path) else cp.Index.create(path, dim=64)
    i = start
    while True:  # batches of 8 pages, one commit each, until killed
        batch = range(i, i + 8)
        embs, imps = zip(*(page(j) for j in batch))
        index.add([f"doc-{j}" for j in batch], list(embs), list(imps), pruner="ratio")
        i += 8
        print(i, flush=True)
    """
)


def page(i):  # the writer's own generator
    rng = np.random.default_rng(i)
    n = 200 + i % 300
    return rng.standard_normal((n, 64)).astype(np.float32), rng.random(n)


def expected(i):
    return cp.TopRatio(0.5).prune(*page(i))


def run_and_kill(path, start, min_commits, rng):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start)], stdout=subprocess.PIPE, text=True)
    seen = start
    try:
        for _ in range(min_commits):
            line = proc.stdout.readline()
            assert line, "writer died on its own"
            seen = int(line)
        time.sleep(rng.uniform(0.0, 0.05))  # land somewhere inside the next add
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return seen


def check(path, at_least):
    with cp.Index.open(path) as index:
        n = len(index)
        assert n >= at_least and n % 8 == 0  # whole commits only
        assert index.ids == [f"doc-{j}" for j in range(n)]
        for j in sorted({0, n // 2, n - 1}):
            page, want = index.get(f"doc-{j}"), expected(j)
            assert_array_equal(page.positions, want.positions)
            assert_array_equal(page.vectors, want.vectors.astype(np.float16))
        vectors, offsets = index.load()
        assert offsets[-1] == vectors.shape[0] == index.n_vectors
    return n


def test_sigkill_during_add_keeps_every_commit(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "crash.h5"
    n = 0
    for round_ in range(6):  # kill, reopen and append, kill again...
        seen = run_and_kill(path, n, min_commits=2 + round_, rng=rng)
        n = check(path, seen)
    with cp.Index.open(path, mode="a") as index:  # still accepts appends in-process
        emb, imp = page(n)
        index.add([f"doc-{n}"], [emb], [imp])
        assert len(index) == n + 1
        assert_array_equal(index.get(f"doc-{n}").positions, expected(n).positions)
