"""The command line on embedding files (no model): build, prune, search, info, repack, exit statuses,
Ctrl-C, closed pipes, commit cadence, settings checks, help texts.

Error, pipe and Ctrl-C behaviour runs the CLI as a subprocess (``python -m colprune``), the rest in-process.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pages

import colprune as cp
from colprune import cli
from colprune.cli import COMMANDS, EXIT_STATUSES, build_parser, main
from colprune.index import layout

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv, timeout=120, **kw):
    """``python -m colprune ARGV`` as a subprocess."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "colprune", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def _size(path) -> int:
    """Bytes of an index: one file, or a collection directory."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture
def pt_file(tmp_path, rng):
    ids, embs, imps = pages(rng, 12, dim=16, lo=3)
    path = tmp_path / "pages.pt"
    torch.save({"embeddings": [torch.from_numpy(e) for e in embs], "importance": [torch.from_numpy(i) for i in imps],
                "ids": ids, "metadata": [{"n": i, "source": f"file{i % 3}.pdf", "page": i + 1} for i in range(12)]}, path)
    return path, ids, embs, imps


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A full float16 index of 12 pages (dim 16) built by the CLI, with query files."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(7)
    ids, embs, imps = pages(rng, 12, dim=16, lo=3)
    src = d / "pages.pt"
    torch.save({"embeddings": [torch.from_numpy(e) for e in embs], "importance": [torch.from_numpy(i) for i in imps],
                "ids": ids, "metadata": [{"source": f"file{i % 3}.pdf", "page": i + 1} for i in range(12)]}, src)
    full = d / "full.h5"
    assert main(["build", str(src), "-o", str(full), "--pruner", "none", "-q"]) == 0
    queries = d / "q.npy"
    np.save(queries, np.stack([embs[5][:3], embs[9][:3]]))
    wrong = d / "wrong.npy"
    np.save(wrong, np.ones((1, 3, 8), np.float32))
    return {"dir": d, "src": src, "full": full, "queries": queries, "wrong_dim": wrong, "embs": embs, "ids": ids}


def test_build_prune_search_info(tmp_path, pt_file, capsys):
    path, ids, embs, imps = pt_file
    full, pruned = tmp_path / "full.h5", tmp_path / "pruned.h5"
    assert main(["build", str(path), "-o", str(full), "--pruner", "none", "-q"]) == 0
    out = capsys.readouterr().out
    assert "12 pages" in out and "/page" in out and "file" in out
    assert main(["prune", str(full), str(pruned), "--pruner", "adaptive", "--k", "-0.25", "-q"]) == 0
    out = capsys.readouterr().out
    assert "12 pages" in out and "vectors" in out and "file" in out
    with cp.Index.open(pruned) as index:
        assert index.pruner == cp.AdaptiveThreshold(-0.25) and index.get("doc-3").metadata["n"] == 3
    queries = tmp_path / "q.npy"
    np.save(queries, np.stack([embs[5][:3], embs[9][:3]]))
    assert main(["search", str(full), str(queries), "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["hits"][0]["id"] for r in res] == ["doc-5", "doc-9"] and len(res[0]["hits"]) == 2
    # hits carry their page's metadata
    assert res[0]["hits"][0]["metadata"]["source"] == "file2.pdf" and res[0]["hits"][0]["metadata"]["page"] == 6
    assert main(["search", str(full), str(queries), "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "doc-5" in out and "file2.pdf p.6" in out
    assert main(["info", str(pruned)]) == 0
    out = capsys.readouterr().out
    assert f" v{layout.FORMAT_VERSION} " in out and "adaptive" in out and "vectors/page" in out
    assert main(["info", str(full), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["keep_ratio"] == 1.0 and info["file_bytes_per_page"] > 0 and "vectors" in info["holds"]
    assert info["full"] is True


def test_pruning_a_pruned_index_says_it_compounds(tmp_path, pt_file, capsys):
    path = pt_file[0]
    full, pruned, again, binary = (str(tmp_path / n) for n in ("full.h5", "pruned.h5", "again.h5", "binary.h5"))
    assert main(["build", str(path), "-o", full, "--pruner", "none", "-q"]) == 0
    assert main(["prune", full, pruned, "--pruner", "adaptive", "--k", "0", "-q"]) == 0
    assert "already pruned" not in capsys.readouterr().err  # a full source: nothing to say
    assert main(["info", full]) == 0
    assert "        full  yes\n" in capsys.readouterr().out
    assert main(["info", pruned, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["full"] is False and info["keep_ratio"] < 1
    ratio = f"{info['keep_ratio']:.1%}"
    assert main(["info", pruned]) == 0
    assert f"        full  no: pruned by adaptive, {ratio} of the original vectors kept\n" in capsys.readouterr().out
    assert main(["prune", pruned, again, "--pruner", "adaptive", "--k", "0", "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"colprune prune: {pruned} is already pruned (adaptive, keeps {ratio} of its original vectors); "
                   f"pruning again compounds: {again} keeps a share of what is left. Build a full index with "
                   "--pruner none to prune from all vectors."]
    # re-encoded with --pruner none, the pages are still the pruned ones
    assert main(["prune", pruned, binary, "--pruner", "none", "--dtype", "int8", "-q"]) == 0
    capsys.readouterr()
    assert main(["info", binary, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["full"] is False


def test_delete_of_an_unknown_id_names_the_cli_option(built, tmp_path, capsys):
    import shutil

    index = tmp_path / "d.h5"
    shutil.copytree(built["full"], index) if built["full"].is_dir() else shutil.copy(built["full"], index)
    assert main(["delete", str(index), "doc-1", "no-such-id"]) == 4
    err = capsys.readouterr().err
    assert "--missing-ok skips them" in err and "missing=" not in err and len(err.strip().splitlines()) == 1
    assert main(["delete", str(index), "doc-1", "no-such-id", "--missing-ok"]) == 0
    assert "deleted 1 page," in capsys.readouterr().out


def test_build_is_resumable_and_reads_npz_and_npy(tmp_path, rng, capsys):
    ids, embs, imps = pages(rng, 6, dim=8, lo=2)
    offsets = np.r_[0, np.cumsum([e.shape[0] for e in embs])]
    npz = tmp_path / "csr.npz"
    np.savez(npz, vectors=np.concatenate(embs), offsets=offsets, importance=np.concatenate(imps), ids=np.array(ids))
    out = tmp_path / "i.h5"
    assert main(["build", str(npz), "-o", str(out), "--pruner", "ratio", "--ratio", "0.5", "-q"]) == 0
    # appending with no pruning options uses the index's own pruner
    assert main(["build", str(npz), "-o", str(out), "-q"]) == 0
    assert "6 pages already in" in capsys.readouterr().out
    npy = tmp_path / "stack.npy"
    np.save(npy, rng.standard_normal((3, 4, 8)).astype(np.float32))
    assert main(["build", str(npy), "-o", str(tmp_path / "n.h5"), "--pruner", "none", "-q"]) == 0
    with cp.Index.open(tmp_path / "n.h5") as index:
        assert index.ids == ["stack:0", "stack:1", "stack:2"]
    with cp.Index.open(out) as index:
        assert index.ids == ids


def test_commits_follow_pages(tmp_path, rng, monkeypatch):
    """--commit-every N: each commit holds at most N pages, whatever the input's size."""
    ids, embs, imps = pages(rng, 23, dim=8, lo=2)
    path = tmp_path / "p.pt"
    torch.save({"embeddings": [torch.from_numpy(e) for e in embs], "importance": [torch.from_numpy(i) for i in imps],
                "ids": ids}, path)
    sizes = []
    real_add = cp.Index.add

    def add(self, ids, *a, **kw):
        sizes.append(len(ids))
        return real_add(self, ids, *a, **kw)

    monkeypatch.setattr(cp.Index, "add", add)
    assert main(["build", str(path), "-o", str(tmp_path / "i.h5"), "--commit-every", "5", "-q"]) == 0
    assert sizes == [5, 5, 5, 5, 3]
    sizes.clear()
    # --commit-seconds: a commit as soon as T seconds have passed, even below N pages
    clock = iter(range(0, 10_000, 10))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    assert main(["build", str(path), "-o", str(tmp_path / "j.h5"), "--commit-every", "100", "--commit-seconds", "5",
                 "-q"]) == 0
    assert max(sizes) == 1 and sum(sizes) == 23


def test_settings_are_checked_before_any_work(built, tmp_path, rng, capsys):
    full = str(built["full"])
    src = str(built["src"])
    for argv, held in (
        (["--dtype", "int8"], "float16 vectors"),
        (["--pruner", "adaptive"], '"name": "none"'),
        (["--encoder", "other-model"], None),  # the fixture index records no encoder: nothing to compare
    ):
        status = main(["build", src, "-o", full, "-q", *argv])
        err = capsys.readouterr().err
        if held is None:
            assert status == 0
            continue
        assert status == 6, err
        assert held in err and "To add to it" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "dim8.npy"
    np.save(other, rng.standard_normal((2, 3, 8)).astype(np.float32))
    assert main(["build", str(other), "-o", full, "-q"]) == 6
    assert "dim 16 (your vectors have dim 8)" in capsys.readouterr().err


# -- exit statuses, one line each, never a traceback -------------------------------------------

def _error_cases(b):
    d = b["dir"]
    bad = d / "bad.h5"
    bad.write_text("not an index")
    (d / "exists.h5").write_text("x")
    return [
        (["info", d / "absent.h5"], 3, "no index at"),
        (["info", d], 5, "not"),  # a folder given as the index
        (["info", bad], 5, "not an HDF5 file"),
        (["build", d / "missing-folder", "-o", d / "x.h5"], 3, "no such file or folder"),
        (["build", b["src"], "-o", d / "x.h5", "--pruner", "adaptive", "--ratio", "0.3"], 2, "--ratio does not apply"),
        (["build", b["src"], "-o", b["full"], "--dtype", "binary"], 6, "holds float16 vectors"),
        (["search", b["full"], b["queries"], "-k", "0"], 2, "-k"),
        (["search", b["full"], ""], 2, "query 1 is empty"),
        (["search", b["full"], b["wrong_dim"]], 4, "dim 8"),
        (["search", b["full"], "some text"], 2, "records no encoder"),
        (["search", b["full"], b["queries"], "--rerank", "50"], 2, "--rerank applies to binary"),
        (["search", b["full"], b["queries"], "--where", "page>>2"], 2, "--where"),
        (["prune", b["full"], d / "exists.h5", "--pruner", "none"], 7, "--overwrite"),
        (["prune", b["full"], b["full"], "--pruner", "none"], 2, "same"),
        (["build", d / "docs-missing.pdf", "-o", d / "y.h5", "--model", str(d / "no-such-model")], 3, "no such file"),
        (["show", b["full"], "no-such-page"], 3, "no page"),
        (["frobnicate"], 2, "invalid choice"),
    ]


def test_every_error_is_one_line_and_its_own_status(built):
    from concurrent.futures import ThreadPoolExecutor

    cases = _error_cases(built)
    with ThreadPoolExecutor(4) as pool:  # the processes mostly wait on imports
        results = list(pool.map(lambda c: run_cli(*c[0]), cases))
    for (argv, status, text), res in zip(cases, results):
        assert res.returncode == status, (argv, res.returncode, res.stderr)
        assert "Traceback" not in res.stderr, (argv, res.stderr)
        last = res.stderr.strip().splitlines()[-1]
        assert text in last, (argv, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, (argv, res.stderr)  # argparse's mistakes too
        assert "usage:" not in res.stderr, (argv, res.stderr)
    hints = {tuple(map(str, a)): r.stderr.strip() for (a, _, _), r in zip(cases, results)}
    assert hints[("frobnicate",)].startswith("colprune: error: argument COMMAND: invalid choice")
    assert hints[("frobnicate",)].endswith("(colprune --help)")
    k0 = ("search", str(built["full"]), str(built["queries"]), "-k", "0")
    assert hints[k0].startswith("colprune: error: argument -k") and hints[k0].endswith("(colprune search --help)")


def test_model_that_cannot_load_is_exit_8_before_encoding(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("some text")
    res = run_cli("build", docs, "-o", tmp_path / "x.h5", "--model", tmp_path / "no-such-model", "-q")
    assert res.returncode == 8 and "cannot load model" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x.h5").exists()


def test_debug_shows_the_traceback(built):
    res = run_cli("info", built["dir"] / "absent.h5", "--debug")
    assert res.returncode == 3 and "Traceback" in res.stderr and "no index at" in res.stderr.strip().splitlines()[-1]


def test_unexpected_errors_say_internal_error(built, monkeypatch, capsys):
    def boom(args):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli.COMMANDS[[c.name for c in COMMANDS].index("info")], "run", boom)
    assert main(["info", str(built["full"])]) == 1
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: oops" in err and "--debug" in err


def test_closed_pipe_exits_quietly(built):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "colprune", "search", str(built["full"]), str(built["queries"]), "-k", "12"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # the reader is gone before anything is written, as with `| head -0`
    _, err = p.communicate(timeout=120)
    assert p.returncode == 141 and err == b""


def test_ctrl_c_keeps_what_was_committed_and_says_how_to_resume(tmp_path):
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 12, 1500)
    off = np.r_[0, np.cumsum(lens)]
    src = tmp_path / "big.npz"
    np.savez(src, vectors=rng.standard_normal((off[-1], 16)).astype(np.float32), offsets=off,
             importance=rng.random(off[-1]).astype(np.float32))
    out = tmp_path / "big.h5"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "colprune", "build", str(src), "-o", str(out), "--commit-every", "1"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_sigint_default)
    os.set_blocking(p.stderr.fileno(), False)
    seen, t0 = b"", time.time()
    while time.time() - t0 < 90 and p.poll() is None:  # wait for the bar to pass a few pages
        seen += p.stderr.read() or b""
        last = seen.split(b"\r")[-1]
        if b"build:" in last and b"| 0/" not in last and seen.count(b"\r") > 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    err = (seen + err).decode()
    assert p.returncode == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1].split("\r")[-1]
    assert "interrupted" in line and "run the same command again to resume" in line
    committed = int(line.split(" holds ")[1].split()[0])
    with cp.Index.open(out) as index:
        assert len(index) == committed and committed > 0
    res = subprocess.run(argv[:-2] + ["--commit-every", "500", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"{committed} pages already in" in res.stdout
    with cp.Index.open(out) as index:
        assert len(index) == 1500


# -- sizes, binary without rerank, repack ------------------------------------------------------

def test_sizes_name_the_rerank_copy_and_no_rerank_drops_it(built, tmp_path, capsys):
    full = str(built["full"])
    with_copy, without = tmp_path / "b.h5", tmp_path / "b-norerank.h5"
    assert main(["prune", full, str(with_copy), "--pruner", "none", "--dtype", "binary", "-q"]) == 0
    line = capsys.readouterr().out
    assert "float16 rerank copy" in line and "file" in line
    assert main(["prune", full, str(without), "--pruner", "none", "--dtype", "binary", "--no-rerank", "-q"]) == 0
    assert "rerank copy" not in capsys.readouterr().out
    with cp.Index.open(with_copy) as a, cp.Index.open(without) as b:
        ia, ib = a.info(), b.info()
        assert ia["vector_bytes_per_page"] == ib["vector_bytes_per_page"]
        assert ia["rerank_vectors"] and not ib["rerank_vectors"]
    res = run_cli("info", with_copy)  # as a shell sees it
    assert res.returncode == 0 and "float16 rerank copy" in res.stdout and "also holds" in res.stdout
    res = run_cli("info", without)
    assert res.returncode == 0 and "rerank copy" not in res.stdout and "file" in res.stdout
    # --rerank applies to the binary index with its copy; not to the one without
    q = str(built["queries"])
    assert main(["search", str(with_copy), q, "--rerank", "5", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["id"] == "doc-5"
    assert main(["search", str(without), q, "--rerank", "5"]) == 2
    assert "without one" in capsys.readouterr().err
    assert main(["prune", full, str(tmp_path / "x.h5"), "--pruner", "none", "--no-rerank"]) == 2
    assert "binary only" in capsys.readouterr().err


def test_repack_keeps_pages_and_drops_the_rerank_copy(built, tmp_path, capsys):
    b = tmp_path / "b.h5"
    q = np.load(built["queries"])[0]
    assert main(["prune", str(built["full"]), str(b), "--pruner", "none", "--dtype", "binary", "-q"]) == 0
    with cp.Index.open(b) as ix:
        ids, hamming = ix.ids, ix.search(q, k=3, rerank=0)
    size = _size(b)
    assert main(["repack", str(b), "--no-rerank", "-q"]) == 0
    assert "->" in capsys.readouterr().out
    with cp.Index.open(b) as ix:
        assert ix.ids == ids and not ix.info()["rerank_vectors"]
        assert ix.search(q, k=3, rerank=0) == hamming
    assert _size(b) < size
    assert main(["repack", str(b)]) == 0
    with cp.Index.open(b) as ix:
        assert ix.ids == ids
    assert main(["repack", str(b), "--no-rerank"]) == 2
    assert "no rerank copy" in capsys.readouterr().err
    # a pruned index keeps its pruner record through the copy, or the copy is refused with what to run
    p = tmp_path / "p.h5"
    assert main(["prune", str(built["full"]), str(p), "--pruner", "adaptive", "--dtype", "binary", "-q"]) == 0
    status = main(["repack", str(p), "--no-rerank", "-q"])
    if status == 0:
        with cp.Index.open(p) as ix:
            assert ix.pruner_config["name"] == "adaptive" and not ix.info()["rerank_vectors"]
    else:
        assert status == 2 and "colprune prune FULL NEW --pruner adaptive" in capsys.readouterr().err
        with cp.Index.open(p) as ix:
            assert ix.info()["rerank_vectors"]  # unchanged


# -- search: many queries, files, stdin, filters, two-stage --------------------------------------

def test_search_many_queries_filters_and_two_stage(built, tmp_path, capsys):
    full, q = str(built["full"]), str(built["queries"])
    assert main(["search", full, q, "--queries-file", q, "-k", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 4 and [r["hits"][0]["id"] for r in res] == ["doc-5", "doc-9"] * 2
    assert main(["search", full, q, "-k", "12", "--where", "source=file0.pdf", "--where", "page>=4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    pages_ = [h["metadata"]["page"] for h in res[0]["hits"]]
    assert sorted(pages_) == [4, 7, 10] and all(h["metadata"]["source"] == "file0.pdf" for h in res[0]["hits"])
    assert main(["search", full, q, "-k", "3", "--where", '{"page": {"in": [6, 10]}}', "--json"]) == 0
    assert {h["id"] for h in json.loads(capsys.readouterr().out)[0]["hits"]} == {"doc-5", "doc-9"}
    assert main(["search", full, q, "-k", "2", "--candidates", "5", "--json"]) == 0
    assert [r["hits"][0]["id"] for r in json.loads(capsys.readouterr().out)] == ["doc-5", "doc-9"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["search", full, "--queries-file", str(empty)]) == 2
    assert "no queries" in capsys.readouterr().err


# -- help -----------------------------------------------------------------------------------

def _example_argv(line: str) -> list[str] | None:
    """The colprune argument vector of one example line (None for lines that run other tools)."""
    line = line.split("   #")[0].split("  #")[0].strip()
    if "| colprune " in line:
        line = "colprune " + line.split("| colprune ", 1)[1]
    if not line.startswith("colprune "):
        return None
    return shlex.split(line)[1:]


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_command_has_help_with_examples_that_parse(command, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    examples = next(c for c in COMMANDS if c.name == command).examples
    parsed = 0
    for line in examples:
        argv = _example_argv(line)
        if argv is None:
            continue
        assert argv[0] == command or argv[0] in {c.name for c in COMMANDS}, line  # serve shows search using it
        build_parser().parse_args(argv)  # every option an example uses exists
        parsed += 1
    assert parsed


def test_top_level_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for code, _ in EXIT_STATUSES:
        assert f"\n  {code:>3}  " in out


def test_exit_status_mapping_is_distinct():
    from colprune.errors import (
        CorruptionError,
        DuplicateIdError,
        FormatError,
        InvalidInputError,
        LockedError,
        ModelLoadError,
        NotFoundError,
        SettingsMismatchError,
        UsageError,
    )

    got = {cls: cli.exit_status(cls("x")) for cls in (UsageError, NotFoundError, InvalidInputError, FormatError,
                                                     SettingsMismatchError, LockedError, ModelLoadError)}
    assert sorted(got.values()) == [2, 3, 4, 5, 6, 7, 8]
    assert cli.exit_status(DuplicateIdError("x")) == 4 and cli.exit_status(CorruptionError("x")) == 5
    assert cli.exit_status(FileExistsError("x")) == 7 and cli.exit_status(KeyError("x")) == 1
    assert cli.exit_status(KeyboardInterrupt()) == 130 and cli.exit_status(BrokenPipeError()) == 141


def test_synthetic_demo(tmp_path, capsys):
    assert main(["demo", "--synthetic", "--pages", "30", "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "saved" in out and "top-1 correct" in out


def test_demo_docs_writes_only_the_pdfs(tmp_path, capsys):
    assert main(["demo", "--docs", str(tmp_path / "docs")]) == 0
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["cells.pdf", "computing.pdf", "rivers.pdf",
                                                                     "thermometry.pdf"]


def test_sharded_collections_info_search_repack(built, tmp_path, capsys):
    dist = pytest.importorskip("colprune.distributed", reason="sharded collections (colprune.distributed)")
    try:
        index = dist.ShardedIndex.create(tmp_path / "s.cps", n_shards=3, dim=16, pruner="none")
    except Exception as e:  # noqa: BLE001 - needs the collection format
        pytest.skip(f"sharded collections unavailable here: {e}")
    with index:
        embs = built["embs"]
        index.add(built["ids"], embs, [np.ones(len(e), np.float32) for e in embs],
                  metadata=[{"source": f"file{i % 3}.pdf", "page": i + 1} for i in range(len(embs))])
    s = str(tmp_path / "s.cps")
    assert main(["info", s]) == 0
    out = capsys.readouterr().out
    assert "3 shards" in out and "12" in out and "vectors/page" in out
    assert main(["search", s, str(built["queries"]), "-k", "1", "--json", "--where", "page<=10"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["hits"][0]["id"] for r in res] == ["doc-5", "doc-9"] and res[0]["hits"][0]["metadata"]["page"] == 6
    assert main(["repack", s, "-q"]) == 0
    assert main(["prune", s, str(tmp_path / "x.h5"), "--pruner", "none"]) == 2
    assert "sharded collection" in capsys.readouterr().err
    assert main(["search", str(built["full"]), str(built["queries"]), "--ray"]) == 2
    assert "--ray searches sharded collections" in capsys.readouterr().err


def _sigint_default() -> None:
    # a runner started in the background (nohup, `cmd &`) ignores SIGINT, and Python keeps an
    # ignored SIGINT ignored: give the child the default so it sees Ctrl-C as a user's terminal does
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_an_appending_build_opens_the_index_once(tmp_path, rng, request, capsys):
    ids, embs, imps = pages(rng, 6, dim=8, lo=2)
    out = tmp_path / "i.h5"
    for n, name in ((3, "a.npz"), (6, "b.npz")):
        offsets = np.r_[0, np.cumsum([e.shape[0] for e in embs[:n]])]
        np.savez(tmp_path / name, vectors=np.concatenate(embs[:n]), offsets=offsets,
                 importance=np.concatenate(imps[:n]), ids=np.array(ids[:n]))
    assert main(["build", str(tmp_path / "a.npz"), "-o", str(out), "--pruner", "ratio", "--ratio", "0.5", "-q"]) == 0
    opened = request.getfixturevalue("index_opens")  # counted from the second build on
    assert main(["build", str(tmp_path / "b.npz"), "-o", str(out), "-q"]) == 0
    assert opened == ["a"]  # settings checked, pages appended and the summary read through one open
    assert "3 pages already in" in capsys.readouterr().out
    with cp.Index.open(out) as index:
        assert index.ids == ids
