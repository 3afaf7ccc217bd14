"""Damaged and crafted collections give a clean colprune error or an unchanged result: never a crash, a hang
or a silently different answer. A fixed-seed sample of ``bench/reliability.py``'s trials."""

import json
import os

import numpy as np
import pytest
from fault_injection import CRAFTS, Worker, copy_of, craft, files_of, flip_bits, make_reference, overwrite_bytes, truncate

pytestmark = pytest.mark.skipif(os.name != "posix", reason="fault injection needs POSIX file semantics")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    ref = str(root / "ref")
    make_reference(ref)
    worker = Worker()
    snap = worker.run(ref, "-")
    assert snap["outcome"] == "snapshot", snap
    want = root / "want.json"
    want.write_text(json.dumps(snap["data"]))
    yield ref, str(want), worker, root
    worker.close()


def run_trials(reference, trials, ok=("error", "unchanged")):
    ref, want, worker, root = reference
    bad = []
    for i, (what, damage) in enumerate(trials):
        path = copy_of(ref, str(root / "trial"))
        label = damage(path)
        out = worker.run(path, want)
        if out["outcome"] not in ok:
            bad.append((what, label, out))
    return bad


# A crafted file carries recomputed checksums: it is a *valid* file whenever its structure is,
# possibly with other content (ids cut elsewhere, say). It must never crash, hang or raise a raw
# error; a different but valid answer ("WRONG" here) is what that file says.
CRAFTED_OK = ("error", "unchanged", "WRONG")


def test_bit_flips_overwrites_and_truncations(reference):
    rng = np.random.default_rng(2026)
    files = [os.path.relpath(f, reference[0]) for f in files_of(reference[0])]
    trials = []
    for kind, fn, n in (("flip", flip_bits, 60), ("overwrite", overwrite_bytes, 15), ("truncate", truncate, 10)):
        for _ in range(n):
            rel = files[int(rng.integers(len(files)))]
            trials.append((kind, lambda p, rel=rel, fn=fn: fn(os.path.join(p, rel), rng)))
    assert run_trials(reference, trials) == []


def test_crafted_files(reference):
    names = sorted(CRAFTS)[::3]  # every third case here; bench/reliability.py runs them all
    assert run_trials(reference, [(n, lambda p, n=n: craft(p, n) or n) for n in names], CRAFTED_OK) == []


@pytest.mark.slow
def test_every_crafted_file(reference):
    assert run_trials(reference, [(n, lambda p, n=n: craft(p, n) or n) for n in sorted(CRAFTS)], CRAFTED_OK) == []
