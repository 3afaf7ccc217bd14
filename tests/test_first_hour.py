"""What a new user meets in the README's first hour (issue 25, re-run in a fresh clone): options before
the query, a taken serve port said before the model loads, a --where that matches nothing, and a second
writer told what to do in words every command can follow. No model loads."""

from __future__ import annotations

import socket

import numpy as np
import pytest

import colprune as cp
from colprune.cli import build_parser, main

DIM = 16


@pytest.fixture
def index_path(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "pages.h5"
    with cp.Index.create(path, dim=DIM, encoder="minilm") as ix:
        ix.add([f"a.pdf#{n}" for n in range(1, 6)], [rng.standard_normal((8, DIM)).astype(np.float32) for _ in range(5)],
               metadata=[{"source": "a.pdf", "page": n} for n in range(1, 6)])
    queries = tmp_path / "q.npy"
    np.save(queries, rng.standard_normal((1, 3, DIM)).astype(np.float32))
    return str(path), str(queries)


def test_options_may_come_before_the_queries(index_path, capsys):
    path, queries = index_path
    args = build_parser().parse_args(["search", path, "-k", "3", "who invented", "the thermometer"])
    assert args.queries == ["who invented", "the thermometer"] and args.k == 3
    assert main(["search", path, "-k", "1", "--json", queries]) == 0
    assert '"a.pdf#' in capsys.readouterr().out


def test_an_unknown_option_names_the_command_help(index_path, capsys):
    path, queries = index_path
    with pytest.raises(SystemExit) as e:
        main(["search", path, queries, "--frobnicate"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err == "colprune: error: unrecognized arguments: --frobnicate (colprune search --help)"


def test_a_where_that_matches_nothing_says_what_sources_look_like(index_path, capsys):
    path, queries = index_path
    assert main(["search", path, queries, "--where", "source=docs/a.pdf", "--json"]) == 0
    out, err = capsys.readouterr()
    assert '"hits": []' in out  # stdout stays JSON
    assert "no page matched --where (sources look like 'a.pdf'" in err


def test_a_taken_port_is_said_before_the_model_loads(index_path, capsys, monkeypatch):
    import colprune.cli.serve as serve_cli
    import colprune.serve.searcher as searcher

    def no_load(*a, **k):
        raise AssertionError("the model loaded before the port was taken")

    monkeypatch.setattr(serve_cli, "check_model", lambda name: None)
    monkeypatch.setattr(searcher, "load_query_encoder", no_load)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", index_path[0], "--port", str(port), "-q"]) == 2
    assert f"port {port} is in use" in capsys.readouterr().err


def test_a_second_writer_is_told_to_wait_not_to_open_read_only(index_path, capsys):
    path, _ = index_path
    with cp.Index.open(path, mode="a"):
        assert main(["delete", path, "a.pdf#1"]) == 7
    err = capsys.readouterr().err
    assert "one writer at a time; wait for it to finish" in err and "read-only" not in err
    with cp.Index.open(path) as ix:
        assert len(ix) == 5
