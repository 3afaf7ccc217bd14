"""A process that has searched can still fork workers, and threads that search at once get serial answers.

Numba's default threading layer on Linux is GNU OpenMP, which kills a forked child that runs a
kernel and hangs a fork ``multiprocessing.Pool``; :mod:`colprune.kernels.backend` asks for a
fork-safe layer and serialises kernel launches (the ``workqueue`` layer aborts on concurrent
ones). Each scenario runs in a fresh interpreter (the layer is chosen once per process) under a
timeout, so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SETUP = """
import json, os, signal, sys, threading, multiprocessing as mp
import numpy as np
import colprune as cp
from colprune.kernels.backend import threading_info

path = sys.argv[1]
rng = np.random.default_rng(3)
with cp.Index.create(path, dim=32) as ix:
    ix.add([f"p{i}" for i in range(80)], [rng.standard_normal((int(n), 32)).astype(np.float32)
                                         for n in rng.integers(10, 60, 80)])
QUERIES = [rng.standard_normal((8, 32)).astype(np.float32) for _ in range(6)]
index = cp.Index.open(path)

def search(_=None):
    return [[(h.id, round(h.score, 4)) for h in hs] for hs in index.search(QUERIES, k=5)]

def forked_child_searches(want):
    pid = os.fork()
    if pid == 0:
        signal.alarm(120)  # a hang ends the child with SIGALRM instead of stalling the test
        os._exit(0 if search() == want else 3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def pool_searches(want):
    with mp.get_context("fork").Pool(2) as pool:
        return pool.map_async(search, range(4)).get(timeout=120) == [want] * 4
"""

PLAIN = SETUP + """
want = search()
out = {"info": threading_info(), "child": forked_child_searches(want), "pool": pool_searches(want)}
print(json.dumps(out))
"""

THREADED = SETUP + """
from concurrent.futures import ThreadPoolExecutor
from colprune.serve import Searcher, make_server
import http.client

want = search()
# threads that search at once, sharing one index: each answer equals the serial one
with ThreadPoolExecutor(6) as pool:
    threads_ok = all(r == want for r in pool.map(search, range(24)))

# a threaded server answering clients while the process forks a child and a pool
server = make_server(Searcher(cp.Index.open(path), quiet=True), "127.0.0.1", 0)
port = server.server_address[1]
threading.Thread(target=server.serve_forever, daemon=True).start()
body = json.dumps({"embeddings": [q.tolist() for q in QUERIES], "k": 5}).encode()

def client(_):
    codes = []
    for _ in range(6):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        got = json.loads(r.read())
        codes.append(r.status == 200 and [[(h["id"], round(h["score"], 4)) for h in q["hits"]]
                                          for q in got["results"]] == want)
        conn.close()
    return all(codes)

with ThreadPoolExecutor(4) as pool:
    clients = pool.map(client, range(4))
    child = forked_child_searches(want)
    pooled = pool_searches(want)
    clients_ok = all(clients)
server.shutdown()
print(json.dumps({"threads": threads_ok, "clients": clients_ok, "child": child, "pool": pooled}))
"""

TORCH = """
import os, signal, sys
import colprune.kernels  # registers the fork handlers
import torch

a = torch.randn(256, 256)
for _ in range(3):
    (a @ a).sum(); torch.randn(1000, 2000).exp().sum()  # torch's OpenMP pool now runs
pid = os.fork()
if pid == 0:
    signal.alarm(60)
    (a @ a).sum(); torch.randn(1000, 2000).exp().sum()
    os._exit(0)
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}  # colprune's own choice
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_a_process_that_searched_forks_children_and_pools(tmp_path):
    out = json.loads(run(PLAIN, str(tmp_path / "ix")))
    assert out["info"]["layer"] in ("workqueue", "tbb") and out["info"]["fork_safe"]
    assert out["child"] == 0 and out["pool"] is True


def test_threads_and_a_threaded_server_stay_correct_across_forks(tmp_path):
    out = json.loads(run(THREADED, str(tmp_path / "ix")))
    assert out == {"threads": True, "clients": True, "child": 0, "pool": True}


def test_a_forked_child_runs_torch_after_the_parent_did():
    pytest.importorskip("torch")
    assert run(TORCH) == "0"
