"""``colprune serve`` under load and abuse: requests/s, p50/p99 latency, and what an idle client costs.

    python bench/serve.py                          # 2,000 synthetic pages, 50 clients, 10 s per phase
    python bench/serve.py --clients 50 --seconds 30 --json
    python bench/serve.py --quick                  # seconds; small sizes

The index is :func:`colprune.synthetic.make_corpus` (float16, dim 128, ~100 kept vectors a page)
served by ``colprune serve`` in its own process; queries are sent as embeddings (20 tokens each, one
per request), so no model loads. Phases: one client alone (the latency floor); ``--clients``
clients back to back; the same with idle connections and slow-body connections (one that
promises 1,000 bytes and sends one) held open all along, which must change nothing. Then the
abuse trials (:func:`abuse_trials`, also run by ``bench/reliability.py``): each malformed or
hostile request with the status it must get. The CPU is named as in the other benches.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from _machine import cpu_line

import colprune as cp
from colprune.synthetic import make_corpus

__all__ = ["build_index", "start_server", "post", "load_phase", "abuse_trials"]


def build_index(path: str, pages: int, seed: int = 0) -> list[bytes]:
    """A float16 index of ``pages`` synthetic pages at ``path``; returns one POST body per query."""
    c = make_corpus(pages, min_vectors=80, max_vectors=120, n_queries=64, seed=seed)
    with cp.Index.create(path, dim=128) as ix:
        ix.add(c.ids, c.embeddings, metadata=[{"page": i % 10} for i in range(pages)])
    return [json.dumps({"embeddings": [np.round(q, 4).tolist()], "k": 10}).encode() for q in c.queries]


def start_server(path: str, *extra: str) -> tuple[subprocess.Popen, int]:
    """``colprune serve PATH --port 0`` in its own process; returns it and its port."""
    p = subprocess.Popen([sys.executable, "-m", "colprune", "serve", path, "--port", "0", "-q", "--no-register", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "http://" not in line:
        p.kill()
        raise RuntimeError(f"colprune serve did not start: {line}{p.stderr.read()[-2000:]}")
    return p, int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])


def post(port: int, body: bytes, path: str = "/search", timeout: float = 120) -> int | str:
    """The status of one POST, or ``"reset"`` / ``"timeout"`` when no answer came."""
    head = f"POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return _exchange(port, head + body, timeout)


def _exchange(port: int, payload: bytes, timeout: float = 120) -> int | str:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(payload)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
    except TimeoutError:
        return "timeout"
    except OSError:
        return "reset"
    try:
        return int(reply.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return "closed" if not reply else "garbled"


def load_phase(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads posting back to back for ``seconds``: requests/s, p50/p99 latency, outcomes."""
    stop = time.perf_counter() + seconds
    lat: list[float] = []
    codes: Counter = Counter()
    lock = threading.Lock()

    def client(i: int) -> None:
        j = i
        while time.perf_counter() < stop:
            t = time.perf_counter()
            code = post(port, bodies[j % len(bodies)])
            with lock:
                lat.append(time.perf_counter() - t)
                codes[code] += 1
            j += clients

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - t0
    p50, p99 = (float(x) * 1e3 for x in np.percentile(lat, [50, 99])) if lat else (float("nan"),) * 2
    return {"clients": clients, "requests": len(lat), "requests_per_s": len(lat) / wall, "p50_ms": p50,
            "p99_ms": p99, "outcomes": {str(k): v for k, v in sorted(codes.items(), key=str)}}


def _held(port: int, idle: int, slow: int) -> list[socket.socket]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle + slow)]
    for s in socks[idle:]:
        s.sendall(b"POST /search HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")
    return socks


def abuse_trials(port: int, body: bytes, timeout: float) -> list[dict]:
    """Hostile requests against a server started with ``--timeout timeout``: ``[{trial, want, got, ok}]``."""
    trials: list[tuple[str, object, object]] = []

    def with_held(payload: bytes | None) -> tuple[object, object]:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout * 10 + 30)
        if payload:
            s.sendall(payload)
        other = post(port, body, timeout=timeout * 10 + 30)  # answered while the bad client is still connected
        try:
            reply = s.recv(200)
            ended = int(reply.split(b" ", 2)[1]) if reply else "closed"
        except (OSError, IndexError, ValueError):
            ended = "closed"
        s.close()
        return other, ended

    other, ended = with_held(None)
    trials += [("a request while a connection stays idle", 200, other), ("the idle connection", "closed", ended)]
    other, ended = with_held(b"POST /search HTTP/1.0\r\nContent-Length: 1000\r\n\r\n{")
    trials += [("a request while a body trickles (1 of 1,000 bytes)", 200, other), ("the slow body", 408, ended)]
    trials.append(("Content-Length 50 MB, body not sent", 413,
                   _exchange(port, b"POST /search HTTP/1.0\r\nContent-Length: 50000000\r\n\r\n", timeout * 10 + 30)))
    trials.append(("body not JSON", 400, post(port, b"{not json")))
    trials.append(("body nested 100,000 deep", 400, post(port, b"[" * 100_000 + b"]" * 100_000)))
    for k in (b"1e400", b"1.5", b"true", b'"abc"', b"0", b"-1", b"10000000000000000000000000000000"):
        trials.append((f"k = {k.decode()}", 400, post(port, b'{"queries": ["a"], "k": ' + k + b"}")))
    trials.append(("10,000 queries in one request", 400, post(port, json.dumps({"queries": ["q"] * 10_000}).encode())))
    trials.append(("unknown path", 404, post(port, b"{}", path="/nothing")))
    trials.append(("unknown method", 405, _exchange(port, b"BREW /search HTTP/1.0\r\n\r\n")))
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(128)]  # the default --max-connections
    time.sleep(0.1)
    trials.append(("a connection beyond 128 open ones", 503, _exchange(port, b"GET /info HTTP/1.0\r\n\r\n", 30)))
    for s in held:
        s.close()
    time.sleep(0.2)
    with ThreadPoolExecutor(60) as pool:
        codes = Counter(pool.map(lambda _: post(port, body), range(60)))
    trials.append(("60 concurrent clients", "60 x 200", "60 x 200" if codes == Counter({200: 60}) else dict(codes)))
    return [{"trial": t, "want": w, "got": g, "ok": w == g} for t, w, g in trials]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    ap.add_argument("--idle", type=int, default=10, help="idle connections (and as many slow bodies) held open")
    ap.add_argument("--quick", action="store_true", help="200 pages, 2 s phases")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.pages, args.seconds = 200, 2.0
    res: dict = {"cpu": cpu_line(), "pages": args.pages}
    with tempfile.TemporaryDirectory(prefix="colprune-serve-bench-") as tmp:
        bodies = build_index(os.path.join(tmp, "pages"), args.pages)
        proc, port = start_server(os.path.join(tmp, "pages"), "--timeout", "600")
        try:
            for b in bodies[:3]:  # the kernels' first call loads (or compiles) them: not a latency
                post(port, b)
            res["alone"] = load_phase(port, bodies, 1, args.seconds)
            res["load"] = load_phase(port, bodies, args.clients, args.seconds)
            held = _held(port, args.idle, args.idle)
            try:
                res["load_with_idle"] = load_phase(port, bodies, args.clients, args.seconds)
            finally:
                for s in held:
                    s.close()
            res["load_with_idle"]["held_idle"] = res["load_with_idle"]["held_slow_body"] = args.idle
        finally:
            proc.terminate()
            proc.wait(30)
        proc, port = start_server(os.path.join(tmp, "pages"), "--timeout", "1")
        try:
            res["abuse"] = abuse_trials(port, bodies[0], 1.0)
        finally:
            proc.terminate()
            proc.wait(30)
    table = [f"colprune serve on {res['cpu']}, {args.pages:,} pages (float16, dim 128), one 20-token query per request",
             "| phase | clients | requests/s | p50 ms | p99 ms | outcomes |", "|---|---|---|---|---|---|"]
    for name, label in (("alone", "one client"), ("load", "back to back"),
                        ("load_with_idle", f"+ {args.idle} idle and {args.idle} slow-body connections held")):
        r = res[name]
        table.append(f"| {label} | {r['clients']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{', '.join(f'{k}: {v}' for k, v in r['outcomes'].items())} |")
    bad = [t for t in res["abuse"] if not t["ok"]]
    table.append(f"abuse trials: {len(res['abuse']) - len(bad)}/{len(res['abuse'])} answered as they must"
                 + "".join(f"\n  FAILED {t['trial']}: want {t['want']}, got {t['got']}" for t in bad))
    print("\n".join(table), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(res))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
