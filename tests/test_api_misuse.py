"""API misuse gets a clear error: a closed index refuses every call, bad arguments name themselves,
and every torch floating dtype (bfloat16 included) is taken for pages and queries."""

from __future__ import annotations

import numpy as np
import pytest

import colprune as cp
from colprune.distributed import ShardedIndex
from colprune.errors import ClosedError, ColpruneError, InvalidInputError, UsageError

DIM = 16


def _pages(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"doc-{i}" for i in range(n)]
    emb = [rng.standard_normal((int(m), DIM)).astype(np.float32) for m in rng.integers(2, 9, n)]
    return ids, emb, [{"page": i % 3} for i in range(n)]


@pytest.fixture
def index(tmp_path):
    ids, emb, meta = _pages()
    ix = cp.Index.create(tmp_path / "a.cpx", dim=DIM)
    ix.add(ids, emb, metadata=meta)
    yield ix
    ix.close()


@pytest.fixture
def sharded(tmp_path):
    ids, emb, meta = _pages()
    s = ShardedIndex.create(tmp_path / "s.cps", n_shards=3, dim=DIM)
    s.add(ids, emb, metadata=meta)
    yield s
    s.close()


# -- a closed index ---------------------------------------------------------------------------

def _calls(v):
    """Every call a closed index must refuse, by name."""
    return {
        "search": lambda ix: ix.search(v), "len": len, "ids": lambda ix: ix.ids, "get": lambda ix: ix.get("doc-0"),
        "contains": lambda ix: "doc-0" in ix, "verify": lambda ix: ix.verify(), "refresh": lambda ix: ix.refresh(),
        "info": lambda ix: ix.info(), "add": lambda ix: ix.add(["new"], [v]), "upsert": lambda ix: ix.upsert(["new"], [v]),
        "delete": lambda ix: ix.delete(["doc-0"]), "delete_where": lambda ix: ix.delete(where={"page": 1}),
        "compact": lambda ix: ix.compact(), "filter_fields": lambda ix: ix.filter_fields(),
        "skipped": lambda ix: ix.skipped, "record_skipped": lambda ix: ix.record_skipped({"x": "why"}),
    }


INDEX_ONLY = {"iter": lambda ix: list(ix), "scores": lambda ix: ix.scores(np.ones((2, DIM), np.float32)),
              "add_packed": lambda ix: ix.add_packed(["p"], np.ones((2, DIM), np.float32), [2]),
              "warm": lambda ix: ix.warm(), "load": lambda ix: ix.load(), "snapshot": lambda ix: ix.snapshot(),
              "dim": lambda ix: ix.dim, "summarize": lambda ix: ix.summarize(2), "attrs": lambda ix: ix.attrs,
              "copy_to": lambda ix: ix.copy_to(ix.path + "-copy")}


def test_closed_error_class():
    assert issubclass(ClosedError, ColpruneError) and issubclass(ClosedError, ValueError)
    assert issubclass(ClosedError, UsageError)  # exit status 2 on the command line
    from colprune.cli.errors import EXIT_USAGE, exit_status
    assert exit_status(ClosedError.of("x")) == EXIT_USAGE


@pytest.mark.parametrize("call", sorted({**_calls(None), **INDEX_ONLY}))
def test_closed_index_refuses_every_call(index, call):
    v = np.ones((3, DIM), np.float32)
    fn = {**_calls(v), **INDEX_ONLY}[call]
    index.close()
    with pytest.raises(ClosedError) as e:
        fn(index)
    assert str(e.value) == f"{index.path} is closed; open it again with colprune.Index.open(...)"
    index.close()  # twice: a no-op
    assert "closed" in repr(index)


def test_closed_read_only_index_and_reopen(index):
    path = index.path
    index.close()
    ro = cp.Index.open(path)
    n = len(ro)
    ro.close()
    for fn in (len, lambda ix: ix.ids, lambda ix: ix.refresh(), lambda ix: ix.verify()):
        with pytest.raises(ClosedError):
            fn(ro)
    with cp.Index.open(path) as again:  # open again works
        assert len(again) == n == 6


def test_with_block_closes(tmp_path):
    ids, emb, _ = _pages()
    with cp.Index.create(tmp_path / "w.cpx", dim=DIM) as ix:
        ix.add(ids, emb)
    with pytest.raises(ClosedError):
        ix.search(emb[0])
    repr(ix)


@pytest.mark.parametrize("call", sorted(_calls(None)))
def test_closed_sharded_index_refuses_every_call(sharded, call):
    fn = _calls(np.ones((3, DIM), np.float32))[call]
    sharded.close()
    with pytest.raises(ClosedError, match=r"is closed; open it again with colprune\.distributed\.ShardedIndex\.open"):
        fn(sharded)
    sharded.close()
    assert "closed" in repr(sharded)


# -- bad arguments ----------------------------------------------------------------------------

def _bad_calls(v):
    return [
        (lambda ix: ix.add("xyz", [v, v, v]), "ids must be a sequence of str, not a str"),
        (lambda ix: ix.upsert("xyz", [v, v, v]), "ids must be a sequence of str, not a str"),
        (lambda ix: ix.add(5, [v]), "ids must be a sequence of str"),
        (lambda ix: ix.add(["n1"], 5), "embeddings must be a sequence"),
        (lambda ix: ix.add(["n1"], None), "embeddings"),
        (lambda ix: ix.add(["n1"], [v], importance=3), "importance must be a sequence"),
        (lambda ix: ix.add(["n1"], [v], metadata={"page": 1}), "metadata must be a sequence"),
        (lambda ix: ix.delete(5), "ids must be a str or a sequence of str"),
        (lambda ix: ix.delete([1, 2]), "ids must be a str or a sequence of str"),
        (lambda ix: ix.delete(where={"page": {}}), "empty condition"),
        (lambda ix: ix.delete(where={"page": {"in": 5}}), "'in' takes a list"),
        (lambda ix: ix.search(v, where={"page": {}}), "empty condition"),
        (lambda ix: ix.search(v, where={"page": {"in": 5}}), "'in' takes a list"),
        (lambda ix: ix.search(v, where={"page": {"in": "ab"}}), "'in' takes a list"),
        (lambda ix: ix.search(v, where={"page": {"between": 1}}), "unknown operator"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls(None))))
def test_bad_arguments_name_themselves(index, case):
    v = np.ones((3, DIM), np.float32)
    fn, words = _bad_calls(v)[case]
    before = (index.version, index.ids)
    with pytest.raises(InvalidInputError, match=words.replace("(", r"\(")):
        fn(index)
    assert (index.version, index.ids) == before  # nothing written


def test_add_packed_refuses_a_str_of_ids(index):
    with pytest.raises(InvalidInputError, match="ids must be a sequence of str, not a str"):
        index.add_packed("ab", np.ones((2, DIM), np.float32), [1, 1])


@pytest.mark.parametrize("case", range(len(_bad_calls(None))))
def test_bad_arguments_sharded(sharded, case):
    v = np.ones((3, DIM), np.float32)
    fn, words = _bad_calls(v)[case]
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        fn(sharded)
    assert len(sharded) == 6


# -- every torch floating dtype ---------------------------------------------------------------

def _exact_in_bf16(arrays):
    """The arrays rounded to values bfloat16 holds exactly (and float16 too, for these magnitudes)."""
    torch = pytest.importorskip("torch")
    return [torch.from_numpy(a).bfloat16().float().numpy() for a in arrays]


@pytest.mark.parametrize("codec", ["float16", "float32"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_torch_float_pages_and_queries(tmp_path, codec, dtype):
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    ids, emb, meta = _pages(8, seed=3)
    emb = _exact_in_bf16(emb)
    queries = _exact_in_bf16([e[:3] * 0.5 for e in emb[:3]])
    with cp.Index.create(tmp_path / "ref.cpx", dim=DIM, dtype=codec) as ref:
        ref.add(ids, emb, metadata=meta)
        want = ref.search(queries, k=5)
    with cp.Index.create(tmp_path / "t.cpx", dim=DIM, dtype=codec) as ix:
        ix.add(ids[:3], [torch.from_numpy(e).to(tdt) for e in emb[:3]], metadata=meta[:3])
        ix.upsert(ids[3:5], [torch.from_numpy(e).to(tdt) for e in emb[3:5]], metadata=meta[3:5])
        packed = torch.from_numpy(np.concatenate(emb[5:])).to(tdt)
        ix.add_packed(ids[5:], packed, [len(e) for e in emb[5:]], metadata=meta[5:])
        stored = ix.get("doc-0").vectors
        assert stored.dtype == np.dtype(codec)
        np.testing.assert_array_equal(stored.astype(np.float32), emb[0])
        for q in ([torch.from_numpy(x).to(tdt) for x in queries], queries):
            got = ix.search(q, k=5)
            assert [[h.id for h in hs] for hs in got] == [[h.id for h in hs] for hs in want]
            np.testing.assert_allclose([[h.score for h in hs] for hs in got], [[h.score for h in hs] for hs in want],
                                       rtol=1e-5, atol=1e-5)
        single = ix.search(torch.from_numpy(queries[0]).to(tdt), k=5)
        assert [h.id for h in single] == [h.id for h in want[0]]


def test_torch_integer_pages_still_refused(index):
    torch = pytest.importorskip("torch")
    with pytest.raises(InvalidInputError, match="floating-point"):
        index.add(["n1"], [torch.ones((3, DIM), dtype=torch.int32)])
