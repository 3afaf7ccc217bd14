"""Overwrite never loses a finished build: a swap that cannot be made keeps the new collection under a
name the error states; what killed overwrites leave beside a collection is reported (``Index.open``
warns once) and removed by ``colprune gc`` (never a folder a live process holds, never through a link).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import colprune as cp
from colprune.cli import main
from colprune.errors import LockedError
from colprune.index.leftovers import LeftoverWarning, find_leftovers, remove_leftovers

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs flock and SIGKILL")

DIM = 8


def pages(start: int, n: int):
    return ([f"p{i}" for i in range(start, start + n)],
            [np.random.default_rng(i).standard_normal((5, DIM)).astype(np.float32) for i in range(start, start + n)])


def make(path, start: int = 0, n: int = 4) -> None:
    with cp.Index.create(path, dim=DIM) as index:
        index.add(*pages(start, n))


def ids_of(path) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LeftoverWarning)
        with cp.Index.open(path) as index:
            return index.ids


def test_a_locked_swap_keeps_the_new_build(tmp_path):
    path = tmp_path / "pages"
    make(path)
    new = cp.Index.create(path, dim=DIM, overwrite=True)
    new.add(*pages(100, 3))
    holder = cp.Index.open(path, mode="a")  # another writer takes the old collection meanwhile
    with pytest.raises(LockedError, match="open for writing by another process") as e:
        new.close()
    holder.close()
    kept = re.search(r"kept, complete, at (\S+?);", str(e.value))
    assert kept, str(e.value)
    kept = kept.group(1)
    assert os.path.basename(kept).startswith("pages.new-") and "rename" in str(e.value)
    assert ids_of(path) == ["p0", "p1", "p2", "p3"]  # the old one as it was
    assert ids_of(kept) == ["p100", "p101", "p102"]  # the new one whole
    assert find_leftovers(path) == []  # nothing hidden left
    make(tmp_path / "other")
    cp.Index.create(path, dim=DIM, overwrite=True).close()  # a later create does not take the kept build
    assert ids_of(kept) == ["p100", "p101", "p102"]
    os.rename(kept, tmp_path / "finished")  # finishing by hand: it is a collection like any other
    assert ids_of(tmp_path / "finished") == ["p100", "p101", "p102"]


def test_copy_to_a_locked_index_keeps_the_copy(tmp_path, monkeypatch):
    from colprune.index import derive

    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src, 0, 3)
    make(dst, 50, 2)
    holders = []
    real = derive.copy_pages

    def copy_then_lock(*args, **kwargs):  # another writer opens dst while the copy is made
        real(*args, **kwargs)
        holders.append(cp.Index.open(dst, mode="a"))

    monkeypatch.setattr(derive, "copy_pages", copy_then_lock)
    with cp.Index.open(src) as index:
        with pytest.raises(LockedError) as e:
            index.copy_to(dst, overwrite=True)
    holders[0].close()
    assert "dst.new-" in str(e.value) and ids_of(dst) == ["p50", "p51"]
    kept = [n for n in os.listdir(tmp_path) if n.startswith("dst.new-")]
    assert len(kept) == 1 and ids_of(tmp_path / kept[0]) == ["p0", "p1", "p2"]


def test_a_failed_copy_leaves_nothing_at_its_path(tmp_path):
    src = tmp_path / "src"
    make(src)
    with cp.Index.open(src) as index:
        with pytest.raises(cp.InvalidInputError):
            index.derive(tmp_path / "derived", "ratio")  # no stored importance for ratio: refused midway
    assert sorted(os.listdir(tmp_path)) == ["src"]


KILLED = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import colprune as cp
    index = cp.Index.create(sys.argv[1], dim=8, overwrite=True)
    index.add(["new"], [np.ones((3, 8), np.float32)])
    print("ready", flush=True)
    time.sleep(600)
    """
)


def start_overwrite(path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_leftovers_of_killed_overwrites_are_reported_and_removed(tmp_path, capsys):
    path = tmp_path / "pages"
    make(path)
    kill(start_overwrite(path))  # (a later create would remove it: the next one is made by hand)
    make(tmp_path / ".pages.old-0123456789abcdef")  # an old collection moved aside, then a kill
    found = [os.path.basename(f) for f in find_leftovers(path)]
    assert len(found) == 2 and re.fullmatch(r"\.pages\.tmp-[0-9a-f]{16}", found[1]), found
    with pytest.warns(LeftoverWarning, match=r"2 folders left beside .*colprune gc"):
        cp.Index.open(path).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeftoverWarning)
        cp.Index.open(path).close()  # once per process
    assert main(["gc", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would remove .pages.") == 2 and "run without --dry-run" in out
    assert len(find_leftovers(path)) == 2
    assert main(["gc", str(path)]) == 0
    assert "removed 2 of 2" in capsys.readouterr().out
    assert find_leftovers(path) == [] and ids_of(path) == ["p0", "p1", "p2", "p3"]
    assert main(["gc", str(path)]) == 0 and "nothing left" in capsys.readouterr().out


def test_gc_keeps_a_build_in_progress(tmp_path, capsys):
    path = tmp_path / "pages"
    make(path)
    proc = start_overwrite(path)
    try:
        assert len(find_leftovers(path)) == 1
        removed, kept = remove_leftovers(path)
        assert removed == [] and len(kept) == 1
        assert main(["gc", str(path)]) == 0 and "kept .pages.tmp-" in capsys.readouterr().out
        assert os.path.isdir(kept[0])
    finally:
        kill(proc)
    assert main(["gc", str(path)]) == 0 and find_leftovers(path) == []


def test_gc_never_follows_links(tmp_path):
    path = tmp_path / "pages"
    make(path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(outside, tmp_path / ".pages.tmp-0123456789abcdef")  # a link named like a leftover: not one
    leftover = tmp_path / ".pages.old-fedcba9876543210"
    leftover.mkdir()
    os.symlink(outside, leftover / "link")  # a link inside a leftover: removed, its target kept
    (leftover / "LOCK").symlink_to(outside / "keep.txt")  # a lock file that is a link: never opened
    assert find_leftovers(path) == [str(leftover)]
    removed, kept = remove_leftovers(path)
    assert removed == [str(leftover)] and kept == [] and not leftover.exists()
    assert (outside / "keep.txt").read_text() == "mine"
    assert os.path.islink(tmp_path / ".pages.tmp-0123456789abcdef")


def test_gc_of_a_missing_index(tmp_path):
    assert main(["gc", str(tmp_path / "nothing")]) == 3
    (tmp_path / ".gone.tmp-0123456789abcdef").mkdir()  # a killed first create: no index, a leftover
    assert main(["gc", str(tmp_path / "gone")]) == 0
    assert os.listdir(tmp_path) == []
