"""``colprune serve`` under abuse, and ``colprune search`` through a running server.

A tiny index (float16, dim 16) and a word-hashing query encoder: no model loads. Each test runs
an in-process server on a free port; limits are shrunk so that timeouts take a fraction of a
second. No assertion is on time: an idle or slow client "blocks no one" because other requests
are answered while it is still connected. The load test (``--slow``) prints p50/p99 under 50
clients; ``bench/serve.py`` is the same with figures.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import colprune as cp
from colprune.cli import main
from colprune.serve import Limits, Searcher, make_server, registry
from colprune.serve.client import ask_server

DIM = 16
ROOT = Path(__file__).resolve().parents[1]


class HashEncoder:
    """Query text to vectors by hashing words; ``gate`` (an Event) holds every encoding until set."""

    name = "hash"
    dim = DIM

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.started = threading.Event()

    def encode_queries(self, texts):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(60)
        return [np.stack([np.random.default_rng(zlib.crc32(w.encode())).standard_normal(DIM) for w in t.split()])
                .astype(np.float32) for t in texts]


@pytest.fixture(scope="module")
def index_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "pages.h5"
    rng = np.random.default_rng(7)
    with cp.Index.create(path, dim=DIM, encoder="minilm") as ix:
        ix.add([f"doc{i}.pdf#{i % 8 + 1}" for i in range(40)],
               [rng.standard_normal((int(n), DIM)).astype(np.float32) for n in rng.integers(5, 30, 40)],
               metadata=[{"source": f"doc{i}.pdf", "page": i % 8 + 1} for i in range(40)])
    return str(path)


@pytest.fixture
def serve(index_path):
    """``serve(limits=..., encoder=...)`` starts a server; returns ``(host, port, server)``; all stop after the test."""
    started = []

    def start(limits: Limits | None = None, encoder=None, default_k: int = 10):
        ix = cp.Index.open(index_path)
        srv = make_server(Searcher(ix, quiet=True, model="minilm", encoder=encoder or HashEncoder()), "127.0.0.1", 0,
                          default_k=default_k, limits=limits)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        started.append((srv, ix, t))
        return "127.0.0.1", srv.server_address[1], srv

    yield start
    for srv, ix, t in started:
        srv.shutdown()
        srv.server_close()
        t.join(10)
        ix.close()


def call(port: int, method: str, path: str, body=None, raw: bytes | None = None, timeout: float = 30):
    """``(status, json body, headers)`` of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null"), dict(r.getheaders())
    finally:
        conn.close()


def raw_exchange(port: int, payload: bytes, timeout: float = 30) -> bytes:
    """Send ``payload`` on a fresh connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def serial_results(index_path: str, queries: list[str], k: int) -> list[dict]:
    with cp.Index.open(index_path) as ix:
        return Searcher(ix, quiet=True, model="minilm", encoder=HashEncoder()).search(queries, k=k)


QUERIES = ["alpha beta", "gamma delta epsilon", "zeta", "eta theta iota kappa"]


# -- answers ----------------------------------------------------------------------------------

def test_get_post_and_info_answer_as_a_local_search(serve, index_path):
    _, port, _ = serve()
    want = serial_results(index_path, QUERIES, 3)
    status, body, _ = call(port, "POST", "/search", {"queries": QUERIES, "k": 3})
    assert status == 200 and body["results"] == want
    status, body, _ = call(port, "GET", "/search?q=alpha+beta&q=zeta&k=3")
    assert status == 200 and body["results"] == [want[0], want[2]]
    status, body, _ = call(port, "POST", "/search", {"queries": ["zeta"], "k": "3", "where": {"page": {"gte": 3}}})
    assert status == 200 and all(h["metadata"]["page"] >= 3 for h in body["results"][0]["hits"])
    status, body, _ = call(port, "GET", "/search?q=zeta&where=page>=3&where=page<5")
    assert status == 200 and all(3 <= h["metadata"]["page"] < 5 for h in body["results"][0]["hits"])
    status, info, _ = call(port, "GET", "/info")
    assert status == 200 and info["docs"] == 40
    assert info["server"]["index"] == os.path.realpath(index_path) and info["server"]["model"] == "minilm"
    assert info["server"]["limits"]["max_queries"] == Limits().max_queries


BAD = [
    (b'{"queries": ["a"], "k": 1e400}', '"k"'),
    ({"queries": ["a"], "k": 1.5}, '"k"'),
    ({"queries": ["a"], "k": True}, '"k"'),
    ({"queries": ["a"], "k": "abc"}, '"k"'),
    ({"queries": ["a"], "k": 0}, '"k"'),
    ({"queries": ["a"], "k": -3}, '"k"'),
    ({"queries": ["a"], "k": 10**30}, '"k"'),
    ({"queries": ["a"], "k": [3]}, '"k"'),
    ({"queries": ["a"], "candidates": "x"}, '"candidates"'),
    ({"queries": ["a"], "candidates": 0}, '"candidates"'),
    ({"queries": ["a"], "rerank": -1}, '"rerank"'),
    ({"queries": ["a"], "rerank": 5}, '"rerank"'),  # not a binary index
    ({"queries": 5}, '"queries"'),
    ({"queries": [1]}, '"queries"[0]'),
    ({"queries": ["ok", " "]}, '"queries"[1]'),
    ({"queries": ["a"], "q": ["b"]}, '"q"'),
    ({"queries": []}, '"queries"'),
    ({"embeddings": [[["x"]]]}, '"embeddings"[0]'),
    ({"embeddings": [[[1.0, 2.0], [1.0]]]}, '"embeddings"[0]'),
    ({"embeddings": [[[1.0] * 3]]}, "dim"),
    ({"queries": ["a"], "where": 5}, '"where"'),
    ({"queries": ["a"], "where": {"nosuch": 1}}, '"where"'),
    ({"queries": ["a"], "where": {"page": {}}}, "page"),
    ({"queries": ["a"], "where": {"page": {"in": 5}}}, "page"),
    ({"queries": ["a"], "colour": "red"}, '"colour"'),
    ({"queries": ["a"] * 65}, "at most 64"),
]


def test_every_malformed_value_is_a_400_naming_the_field(serve):
    _, port, _ = serve()
    for body, field in BAD:
        status, answer, _ = call(port, "POST", "/search", raw=body) if isinstance(body, bytes) else \
            call(port, "POST", "/search", body)
        msg = answer["error"]
        assert status == 400 and field in msg, (body, status, msg)
        assert "--" not in msg and "int()" not in msg and "Traceback" not in msg and "Error" not in msg, (body, msg)
    for raw, words in [(b"{not json", "not JSON"), (b"[1, 2]", "JSON object"), (b'{"k": NaN}', "NaN"),
                       (b"[" * 100_000 + b"]" * 100_000, "nested"), (b"\xff\xfe", "UTF-8")]:
        status, answer, _ = call(port, "POST", "/search", raw=raw)
        assert status == 400 and words in answer["error"], (raw[:20], answer)
    for query, field in [("q=a&k=abc", '"k"'), ("q=a&k=1&k=2", '"k"'), ("q=a&colour=red", '"colour"'),
                         ("q=", "empty"), ("q=a&where=page>>3", "where"), ("q=a&k=1.5", '"k"')]:
        status, answer, _ = call(port, "GET", f"/search?{query}")
        assert status == 400 and field in answer["error"] and "--" not in answer["error"], (query, answer)


def test_paths_and_methods(serve):
    _, port, _ = serve()
    status, answer, _ = call(port, "GET", "/nothing")
    assert status == 404 and "/search" in answer["error"]
    status, answer, headers = call(port, "POST", "/info", {})
    assert status == 405 and headers["Allow"] == "GET"
    status, answer, headers = call(port, "DELETE", "/search")
    assert status == 405 and headers["Allow"] == "GET, POST"
    reply = raw_exchange(port, b"BREW /search HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 405") and b'"error"' in reply
    reply = raw_exchange(port, b"POST /search HTTP/1.0\r\n\r\n")  # no Content-Length
    assert reply.startswith(b"HTTP/1.0 411") and b"Content-Length" in reply
    reply = raw_exchange(port, b"POST /search HTTP/1.0\r\nContent-Length: -5\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 400") and b"Content-Length" in reply
    reply = raw_exchange(port, b"garbage\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 400") and b'"error"' in reply


# -- abuse --------------------------------------------------------------------------------------

def test_a_huge_body_is_refused_before_it_is_read(serve):
    _, port, _ = serve(Limits(max_body_bytes=10_000))
    # 50 MB promised, none sent: the answer comes without the server waiting for it
    reply = raw_exchange(port, b"POST /search HTTP/1.0\r\nContent-Length: 50000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 413") and b"10,000" in reply
    status, answer, _ = call(port, "POST", "/search", raw=b'{"queries": ["' + b"a " * 6000 + b'"]}')
    assert status == 413


def test_idle_and_slow_clients_block_no_one(serve, index_path):
    _, port, _ = serve(Limits(read_timeout=60, request_timeout=120))
    want = serial_results(index_path, ["zeta"], 2)
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /search HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /search?q=zeta HTTP/1.0\r\nHost: x\r\n")  # headers never finished
    try:
        for _ in range(5):  # answered while all three are connected
            status, body, _ = call(port, "POST", "/search", {"queries": ["zeta"], "k": 2}, timeout=30)
            assert status == 200 and body["results"] == want
    finally:
        for s in (idle, slow, half):
            s.close()


def test_timeouts_end_idle_and_slow_connections(serve):
    _, port, _ = serve(Limits(read_timeout=0.3, request_timeout=1.0))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as idle:
        assert idle.recv(100) == b""  # closed by the server, nothing to answer
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(b"POST /search HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")
        assert slow.recv(1000).startswith(b"HTTP/1.0 408")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as trickle:
        ended = False
        for byte in b"GET /search?q=zeta HTTP/1.0\r\n" + b"X-Pad: y\r\n" * 50:  # a byte every 0.05 s: never idle
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                ended = True
                break
            time.sleep(0.05)
        assert ended or trickle.recv(100) == b""  # the request deadline (1 s) ended it


def test_overload_is_a_503_with_retry_after(serve, index_path):
    gate = threading.Event()
    enc = HashEncoder(gate)
    _, port, srv = serve(Limits(max_waiting=0), encoder=enc)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, port, "POST", "/search", {"queries": ["zeta"], "k": 2})
        assert enc.started.wait(30)  # the first search holds the only slot
        status, answer, headers = call(port, "POST", "/search", {"queries": ["zeta"]})
        assert status == 503 and headers["Retry-After"] == "1" and "busy" in answer["error"]
        status, info, _ = call(port, "GET", "/info")  # /info is answered while a search runs
        assert status == 200 and info["load"] == {"running": 1, "queued": 0}
        gate.set()
        assert first.result(60)[0] == 200


def test_too_many_connections_are_a_503(serve):
    _, port, _ = serve(Limits(max_connections=2, read_timeout=60, request_timeout=120))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted
        reply = raw_exchange(port, b"GET /info HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.0 503") and b"Retry-After: 1" in reply
    finally:
        for s in held:
            s.close()


def test_sixty_concurrent_clients_get_the_serial_answers(serve, index_path):
    _, port, _ = serve()
    queries = [f"{QUERIES[i % 4]} w{i}" for i in range(60)]
    want = serial_results(index_path, queries, 5)
    with ThreadPoolExecutor(60) as pool:
        got = list(pool.map(lambda q: call(port, "POST", "/search", {"queries": [q], "k": 5}, timeout=120), queries))
    assert [g[0] for g in got] == [200] * 60
    assert [g[1]["results"][0] for g in got] == want


# -- the command -----------------------------------------------------------------------------

def test_a_taken_port_says_so_in_cli_words(index_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", index_path, "--port", str(port), "--lazy", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"port {port} is in use (another colprune serve?); pass --port N or --port 0" in err and "Errno" not in err


def test_serve_notes_itself_while_it_runs_and_removes_the_note_on_sigterm(index_path, registry_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLPRUNE_SERVE_DIR=str(registry_dir))
    p = subprocess.Popen([sys.executable, "-m", "colprune", "serve", index_path, "--port", "0", "--lazy", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        note = registry.lookup(index_path)
        assert note is not None and note["port"] == port and note["pid"] == p.pid and note["model"] == "minilm"
        assert call(port, "GET", "/info")[0] == 200
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0 and "stopped" in p.stderr.read()
        assert registry.lookup(index_path) is None and not os.listdir(registry_dir)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


# -- the registry and colprune search through a server -------------------------------------------------

@pytest.fixture
def registry_dir(tmp_path, monkeypatch):
    d = tmp_path / "registry"
    monkeypatch.setenv("COLPRUNE_SERVE_DIR", str(d))
    return d


def test_registry_notes_follow_the_real_path_and_drop_dead_servers(tmp_path, registry_dir, index_path):
    link = tmp_path / "link.h5"
    link.symlink_to(index_path)
    note = registry.register(str(link), host="0.0.0.0", port=1234, index_version=3, model="minilm")
    assert note == registry.note_path(index_path)
    got = registry.lookup(index_path)
    assert got["host"] == "127.0.0.1" and got["port"] == 1234 and got["pid"] == os.getpid()
    registry.unregister(note)
    assert registry.lookup(index_path) is None and not os.path.exists(note)
    assert registry.register(index_path, host="10.1.2.3", port=1, index_version=3, model=None) is None
    with open(registry.note_path(index_path), "w") as f:  # a server killed with -9
        json.dump({"pid": 2**22 + 12345, "host": "127.0.0.1", "port": 1, "index": os.path.realpath(index_path)}, f)
    assert registry.lookup(index_path) is None and not os.path.exists(registry.note_path(index_path))


def test_ask_server_only_when_index_version_and_model_match(serve, index_path, registry_dir):
    _, port, srv = serve()
    with cp.Index.open(index_path) as ix:
        version = ix.version
    assert ask_server(index_path, version, "minilm", ["zeta"], k=2) is None  # not registered
    registry.register(index_path, host="127.0.0.1", port=port, index_version=version, model="minilm")
    results, where = ask_server(index_path, version, "minilm", QUERIES * 20, k=3)  # 80 queries: two requests
    assert where == f"127.0.0.1:{port}" and results == serial_results(index_path, QUERIES * 20, 3)
    assert ask_server(index_path, version + 1, "minilm", ["zeta"], k=2) is None
    assert ask_server(index_path, version, "other-model", ["zeta"], k=2) is None
    assert ask_server(index_path, version, "minilm", ["zeta"], k=5000) is None  # over the server's max_k
    srv.shutdown()
    srv.server_close()
    assert ask_server(index_path, version, "minilm", ["zeta"], k=2) is None  # nobody listening


def test_search_is_answered_by_a_running_serve(serve, index_path, registry_dir, monkeypatch, capsys):
    import colprune.cli.search as cli_search
    import colprune.serve.searcher as searcher_mod

    _, port, _ = serve()
    with cp.Index.open(index_path) as ix:
        registry.register(index_path, host="127.0.0.1", port=port, index_version=ix.version, model="minilm")

    def no_model(*a, **kw):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(searcher_mod, "load_query_encoder", no_model)
    monkeypatch.setattr(cli_search, "check_model", lambda name: None)
    args = ["search", index_path, "alpha beta", "zeta", "-k", "3", "--where", "page>=2"]
    assert main([*args, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == f"(answered by colprune serve on 127.0.0.1:{port})"
    served = json.loads(out)
    assert main(args) == 0
    table = capsys.readouterr().out
    monkeypatch.setattr(searcher_mod, "load_query_encoder", lambda name, quiet=False: HashEncoder())
    assert main([*args, "--json", "--no-server", "-q"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == served and err == ""
    assert main([*args, "--no-server"]) == 0
    assert capsys.readouterr().out == table


# -- load (slow) -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_load_fifty_clients_with_an_idle_connection(serve, index_path):
    _, port, _ = serve(Limits(read_timeout=120, request_timeout=240))
    idle = socket.create_connection(("127.0.0.1", port))
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /search HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")
    times: list[float] = []

    def client(i: int) -> list[int]:
        codes = []
        for j in range(8):
            t = time.perf_counter()
            codes.append(call(port, "POST", "/search", {"queries": [f"{QUERIES[(i + j) % 4]} c{i}"], "k": 5},
                              timeout=120)[0])
            times.append(time.perf_counter() - t)
        return codes

    try:
        with ThreadPoolExecutor(50) as pool:
            codes = [c for cs in pool.map(client, range(50)) for c in cs]
    finally:
        idle.close()
        slow.close()
    assert codes == [200] * 400
    p50, p99 = np.percentile(times, [50, 99])
    print(f"\n50 clients x 8 requests with an idle and a slow connection open: p50 {p50 * 1e3:.1f} ms, "
          f"p99 {p99 * 1e3:.1f} ms")


def test_serve_warms_and_answers_a_sharded_collection(tmp_path, registry_dir):
    """Without --lazy the server warms the index before it listens, a sharded collection too."""
    import numpy as np

    from colprune.distributed import ShardedIndex

    rng = np.random.default_rng(0)
    path = tmp_path / "s.cps"
    with ShardedIndex.create(path, n_shards=2, dim=8, dtype="residual2") as s:
        s.add([f"p{i}" for i in range(12)], [rng.standard_normal((4, 8)).astype(np.float32) for _ in range(12)])
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLPRUNE_SERVE_DIR=str(registry_dir))
    p = subprocess.Popen([sys.executable, "-m", "colprune", "serve", str(path), "--port", "0", "-q", "--no-register"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, p.stderr.read() if p.poll() is not None else line
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        status, body, _ = call(port, "POST", "/search", {"embeddings": [rng.standard_normal((3, 8)).tolist()], "k": 3})
        assert status == 200 and len(body["results"][0]["hits"]) == 3, body
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
