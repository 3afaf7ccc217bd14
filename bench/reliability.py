"""The reliability table: damage, crafted files, kill -9 and concurrency, each with its count and outcome.

    python bench/reliability.py                 # 1,000 bit flips, every crafted file, 100+ kills, 30 s concurrency
    python bench/reliability.py --flips 100 --kills 5 --seconds 10 --json

Damage trials (bit flips, byte overwrites, truncations) and crafted files (damage with every
checksum recomputed, links and storage leaving the file, lying manifests) run on copies of a
small collection that uses every part of the format; a reader process reads everything back
(``tests/fault_injection.py``). Outcomes: ``error`` (a colprune error), ``unchanged``, and the
failures ``WRONG`` (a silently different answer; allowed only for the crafted files listed as
valid), ``RAW`` (a non-colprune exception), ``CRASH``, ``HANG`` (30 s), ``MEMORY`` (the reader's
peak RSS grew over 200 MB, or an allocation hit its address-space cap of 1 GiB over its warm-up).
Kill trials SIGKILL a writer at a random moment of an append, upsert, delete, compaction or
overwrite, then check that the collection opens at a committed state, verifies, and that every
page committed before the kill is there. Disk-full trials run writers out of space (a 4 MB
tmpfs, or a file size limit where no tmpfs can be mounted) and count clean ``WriteError``s,
crashes and lost commits. Server trials (``--only server``) abuse a ``colprune serve`` process
with ``bench/serve.py``'s hostile requests, each of which must get its status while other
clients are answered. The concurrency trial runs 4 reader processes against
1 writer and compares the writer's commit rate with its rate alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from fault_injection import (  # noqa: E402
    CRAFTS,
    KILLER,
    VALID_CRAFTS,
    Worker,
    copy_of,
    craft,
    files_of,
    flip_bits,
    make_reference,
    overwrite_bytes,
    truncate,
)

import colprune as cp  # noqa: E402


def damage_trials(args, tmp: str) -> dict:
    ref = os.path.join(tmp, "ref")
    make_reference(ref)
    worker = Worker()
    snap = worker.run(ref, "-")
    want = os.path.join(tmp, "want.json")
    with open(want, "w") as fh:
        json.dump(snap["data"], fh)
    rng = np.random.default_rng(args.seed)
    files = [os.path.relpath(f, ref) for f in files_of(ref)]
    table: dict = {}
    bad: list = []

    def run(kind: str, fn, n: int, ok=("error", "unchanged")) -> None:
        counts: Counter = Counter()
        for i in range(n):
            path = copy_of(ref, os.path.join(tmp, "trial"))
            label = fn(path, i)
            out = worker.run(path, want)
            counts[out["outcome"]] += 1
            if out["outcome"] not in ok:
                bad.append({"kind": kind, "what": label, **out})
            if (i + 1) % 100 == 0:
                print(f"  {kind}: {i + 1}/{n} {dict(counts)}", file=sys.stderr, flush=True)
        table[kind] = dict(counts)

    def pick(path):
        return os.path.join(path, files[int(rng.integers(len(files)))])

    run("bit flip", lambda p, i: flip_bits(pick(p), rng), args.flips)
    run("byte overwrite", lambda p, i: overwrite_bytes(pick(p), rng), args.overwrites)
    run("truncation", lambda p, i: truncate(pick(p), rng), args.truncations)
    # a hostile craft must be refused; a valid one (VALID_CRAFTS) may read as another, valid collection
    hostile, valid = sorted(set(CRAFTS) - VALID_CRAFTS), sorted(VALID_CRAFTS)
    run("crafted file", lambda p, i: craft(p, hostile[i]) or hostile[i], len(hostile))
    run("crafted file (valid)", lambda p, i: craft(p, valid[i]) or valid[i], len(valid), ok=("error", "unchanged", "WRONG"))
    worker.close()
    return {"table": table, "failures": bad}




def kill_trials(args, tmp: str) -> dict:
    rng = np.random.default_rng(args.seed)
    out: dict = {}
    failures = []
    for op in ("append", "upsert", "delete", "compaction", "overwrite"):
        path = os.path.join(tmp, f"kill-{op}")
        with cp.Index.create(path, dim=16) as index:
            index.add([f"p{i}" for i in range(400)],
                      [np.random.default_rng(i).standard_normal((40, 16)).astype(np.float32) for i in range(400)],
                      commit_every=100)
        counts: Counter = Counter()
        for r in range(args.kills):
            with cp.Index.open(path) as before:
                ids_before = before.ids
            proc = subprocess.Popen([sys.executable, "-c", KILLER, path, op], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True)
            last = None
            try:
                last = proc.stdout.readline().strip()  # at least one commit
                time.sleep(float(rng.uniform(0, 0.15)))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            try:
                with cp.Index.open(path) as index:
                    index.verify()
                    ids = index.ids
                    ok = len(set(ids)) == len(ids)
                    if op == "append":
                        ok &= ids[: len(ids_before)] == ids_before and len(ids) >= len(ids_before) + 2
                    elif op == "upsert":
                        ok &= sorted(ids) == sorted(ids_before)
                    elif op in ("delete", "compaction"):
                        ok &= len(ids) <= len(ids_before) + 1
                    else:
                        ok &= len(ids) in (20, 400) and bool(last)
                    index.search(np.ones((2, 16), np.float32), k=3)
                counts["committed state" if ok else "LOST"] += 1
                if not ok:
                    failures.append({"op": op, "round": r})
            except Exception as e:  # noqa: BLE001
                counts["UNREADABLE"] += 1
                failures.append({"op": op, "round": r, "error": f"{type(e).__name__}: {e}"[:300]})
            leftovers = [n for n in os.listdir(tmp) if n.startswith(f".kill-{op}")]
            if op == "overwrite" and leftovers:
                counts["temporary folders left"] = len(leftovers)  # removed by nobody: reported
        with cp.Index.open(path, mode="a") as index:  # still writable
            index.add([f"after-{op}"], [np.ones((2, 16), np.float32)])
        out[op] = dict(counts)
        print(f"  kills {op}: {dict(counts)}", file=sys.stderr, flush=True)
    return {"table": out, "failures": failures}


READER = textwrap.dedent(
    """
    import sys, time, numpy as np, colprune as cp
    path, seconds, pause = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    q = np.ones((3, 16), np.float32)
    n = bad = 0
    end = time.time() + seconds
    while time.time() < end:
        with cp.Index.open(path) as index:
            ids = index.ids
            man = sum(s["n_docs"] - (s["deletes"]["count"] if s["deletes"] else 0) for s in index.snapshot().manifest["segments"])
            hits = index.search(q, k=5)
            if len(ids) != len(set(ids)) or len(ids) != man or not all(h.id in set(ids) for h in hits):
                bad += 1
        n += 1
        time.sleep(pause)
    print(n, bad, flush=True)
    """
)

WRITER = textwrap.dedent(
    """
    import os, sys, time, numpy as np, colprune as cp
    path, seconds = sys.argv[1], float(sys.argv[2])
    n = 0
    pid = os.getpid()
    with cp.Index.open(path, mode="a") as index:
        index.add([f"warm{pid}"], [np.ones((60, 16), np.float32)])  # compile the kernels before the clock starts
        index.delete([f"warm{pid}"])
        end = time.time() + seconds
        while time.time() < end:
            i = n
            index.add([f"w{pid}-{i}"], [np.random.default_rng(i).standard_normal((60, 16)).astype(np.float32)])
            if i % 5 == 4:
                index.delete([f"w{pid}-{i - 2}"])
            n += 1
    print(n / seconds, flush=True)
    """
)


def concurrency_trial(args, tmp: str) -> dict:
    path = os.path.join(tmp, "rw")
    with cp.Index.create(path, dim=16) as index:
        index.add([f"p{i}" for i in range(300)],
                  [np.random.default_rng(i).standard_normal((40, 16)).astype(np.float32) for i in range(300)])

    def writer() -> float:
        res = subprocess.run([sys.executable, "-c", WRITER, path, str(args.seconds)], capture_output=True, text=True)
        if res.returncode:
            raise RuntimeError(f"writer failed: {res.stderr[-2000:]}")
        return float(res.stdout.strip().splitlines()[-1])

    alone = writer()
    readers = [subprocess.Popen([sys.executable, "-c", READER, path, str(args.seconds + 30), str(args.reader_pause)],
                                stdout=subprocess.PIPE, text=True)
               for _ in range(4)]
    time.sleep(10)  # readers started and searching
    with_readers = writer()
    reads = bad = 0
    for r in readers:
        n, b = (int(x) for x in r.communicate(timeout=600)[0].split())
        reads, bad = reads + n, bad + b
    return {"reader_pause_s": args.reader_pause, "writer_commits_per_s_alone": alone,
            "writer_commits_per_s_with_4_readers": with_readers,
            "ratio": with_readers / alone, "reads": reads, "inconsistent_reads": bad, "seconds": args.seconds}

DISK_FULL = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    import numpy as np
    import colprune as cp
    from colprune.errors import WriteError

    root, seed, ops, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(seed)
    path = os.path.join(root, "pages")
    filler = os.path.join(root, "filler")
    with open(filler, "wb") as fh:  # room to give back at the end
        fh.write(b"x" * (1 << 20))
    out = {"ok": 0, "WriteError": 0, "raw": []}
    index = cp.Index.create(path, dim=64)
    index.add(["first"], [np.ones((4, 64), np.float32)])
    if mode == "fsize":  # no tmpfs: a per-file size limit, EFBIG past it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    n = 0
    for t in range(ops):
        op = str(rng.choice(["add", "add", "add", "upsert", "delete", "compact", "copy"]))
        k = int(rng.integers(1, 12))
        embs = [rng.standard_normal((int(rng.integers(50, 400)), 64)).astype(np.float32) for _ in range(k)]
        try:
            if op == "add":
                index.add([f"p{n + i}" for i in range(k)], embs)
                n += k
            elif op == "upsert":
                index.upsert(index.ids[-k:], embs[: len(index.ids[-k:])])
            elif op == "delete" and len(index) > 3:
                index.delete(index.ids[1:3])
            elif op == "compact":
                index.compact()
            elif op == "copy":
                index.copy_to(os.path.join(root, "copy"), overwrite=True)
            out["ok"] += 1
        except WriteError as e:
            out["WriteError"] += 1
            out["message"] = str(e)
        except Exception as e:  # noqa: BLE001 - counted
            out["raw"].append(f"{op}: {type(e).__name__}: {e}"[:300])
    expected = index.ids
    os.unlink(filler)
    if mode == "fsize":
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        index.add(["after"], [np.ones((4, 64), np.float32)])  # space again: the same writer goes on
        out["after"] = True
    except Exception as e:  # noqa: BLE001 - counted
        out["after"] = f"{type(e).__name__}: {e}"[:300]
    index.close()
    with cp.Index.open(path) as again:
        again.verify()
        out["lost"] = again.ids != expected + (["after"] if out["after"] is True else [])
    print(json.dumps(out), flush=True)
    """
)


def _tmpfs_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, timeout=60)
    return probe.returncode == 0


def disk_full_trials(args, tmp: str) -> dict:
    """Writers that run out of space: on a 4 MB tmpfs (a user namespace, where allowed) or, else, under a 256 KB
    file size limit. Each trial adds, upserts, deletes, compacts and copies until writes fail, frees space, writes
    once more and checks the collection. Outcomes: ``clean WriteError`` (every failure a WriteError, the later write
    went through, every commit there), ``no failure`` (the trial never filled the disk), and the failures ``RAW``
    (another exception), ``CRASH`` (the process died: rc -11/139 is a segfault), ``LOST`` (a commit missing)."""
    tmpfs = _tmpfs_ok()
    counts: Counter = Counter()
    failures = []
    for i in range(args.disk_full):
        root = os.path.join(tmp, f"full-{i}")
        os.makedirs(root)
        if tmpfs:
            script = f'mount -t tmpfs -o size=4m tmpfs "{root}" && exec "{sys.executable}" -c "$0" "{root}" "$1" 40 tmpfs'
            cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, DISK_FULL, str(args.seed + i)]
        else:
            cmd = [sys.executable, "-c", DISK_FULL, root, str(args.seed + i), "40", "fsize"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        try:
            out = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            counts["CRASH"] += 1
            failures.append({"trial": i, "rc": proc.returncode, "stderr": proc.stderr[-1000:]})
            continue
        if out["raw"]:
            outcome = "RAW"
        elif out["lost"]:
            outcome = "LOST"
        elif out["after"] is not True:
            outcome = "RAW"
        else:
            outcome = "clean WriteError" if out["WriteError"] else "no failure"
        counts[outcome] += 1
        counts["write errors (all trials)"] += out["WriteError"]
        if outcome not in ("clean WriteError", "no failure"):
            failures.append({"trial": i, **out})
        shutil.rmtree(root, ignore_errors=True)
        if (i + 1) % 10 == 0:
            print(f"  disk full: {i + 1}/{args.disk_full} {dict(counts)}", file=sys.stderr, flush=True)
    kind = "disk full (4 MB tmpfs)" if tmpfs else "disk full (256 KB file size limit)"
    return {"table": {kind: dict(counts)}, "failures": failures}


def server_trials(args, tmp: str) -> dict:
    """``colprune serve`` abused (``bench/serve.py``'s trials, in a server process started with ``--timeout 1``):
    an idle connection, a trickling body, a 50 MB Content-Length, bad JSON, bad k values, 10,000 queries, 60
    concurrent clients; each must get its status (or be closed) while other clients are answered."""
    import serve as bench_serve  # bench/serve.py, beside this script

    path = os.path.join(tmp, "served")
    bodies = bench_serve.build_index(path, 200, seed=args.seed)
    proc, port = bench_serve.start_server(path, "--timeout", "1")
    try:
        trials = bench_serve.abuse_trials(port, bodies[0], 1.0)
    finally:
        proc.terminate()
        proc.wait(30)
    counts = Counter("answered as required" if t["ok"] else "WRONG" for t in trials)
    return {"table": {"server abuse (idle, slow body, 50 MB body, bad JSON and k, 10,000 queries, 60 clients)":
                      dict(counts)}, "failures": [t for t in trials if not t["ok"]]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flips", type=int, default=1000)
    p.add_argument("--overwrites", type=int, default=200)
    p.add_argument("--truncations", type=int, default=100)
    p.add_argument("--kills", type=int, default=25, help="kills per operation (5 operations)")
    p.add_argument("--seconds", type=float, default=30.0, help="concurrency trial length")
    p.add_argument("--reader-pause", type=float, default=0.0,
                   help="seconds each reader waits between reads (0: read back to back; on a 2-core machine four "
                        "busy readers take the writer's CPU, which measures CPU sharing, not locking)")
    p.add_argument("--disk-full", type=int, default=20, help="writers that run out of space (40 writes each)")
    p.add_argument("--only", choices=["damage", "kills", "disk-full", "server", "concurrency"], default=None, help="run one part")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="colprune-reliability-")
    res: dict = {}
    try:
        t = time.perf_counter()
        empty = {"table": {}, "failures": []}
        res["damage"] = damage_trials(args, tmp) if args.only in (None, "damage") else empty
        res["kills"] = kill_trials(args, tmp) if args.only in (None, "kills") else empty
        res["disk_full"] = disk_full_trials(args, tmp) if args.only in (None, "disk-full") else empty
        res["server"] = server_trials(args, tmp) if args.only in (None, "server") else empty
        res["concurrency"] = concurrency_trial(args, tmp) if args.only in (None, "concurrency") else None
        res["seconds"] = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(res))
        return 0
    print("| trial | count | outcomes |\n|---|---|---|")
    kills = {f"kill -9 during {k}": v for k, v in res["kills"]["table"].items()}
    for kind, counts in {**res["damage"]["table"], **kills, **res["disk_full"]["table"], **res["server"]["table"]}.items():
        extra = ("temporary folders left", "write errors (all trials)")
        print(f"| {kind} | {sum(v for k, v in counts.items() if k not in extra)} | "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + " |")
    c = res["concurrency"]
    if c is None:
        print(json.dumps({"failures": res["damage"]["failures"] + res["kills"]["failures"] + res["disk_full"]["failures"]
                          + res["server"]["failures"]},
                         indent=1))
        return 0
    print(f"| 4 readers (pause {c['reader_pause_s']:g} s) + 1 writer, {c['seconds']:.0f} s | {c['reads']} reads | "
          f"{c['inconsistent_reads']} inconsistent; "
          f"writer at {c['ratio']:.0%} of its rate alone ({c['writer_commits_per_s_with_4_readers']:.1f} vs "
          f"{c['writer_commits_per_s_alone']:.1f} commits/s) |")
    print(json.dumps({"failures": res["damage"]["failures"] + res["kills"]["failures"] + res["disk_full"]["failures"]
                      + res["server"]["failures"]},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
