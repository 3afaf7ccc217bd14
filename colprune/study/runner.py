"""``colprune study``: storage versus quality for a grid of pruning methods on one dataset.

Encode once into a *full* index that keeps every vector and every importance signal, derive
each variant from it (cached on disk, so re-running with one more method re-uses the rest),
search, and score against graded judgements with bootstrap intervals over queries.

The grid format is :data:`GRID_HELP` (also in ``colprune study --help``).
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..index import Index
from ..pruning import PRUNERS, make_pruner
from .datasets import Dataset, load_dataset
from .metrics import bm25_rank, bootstrap_ci, hit_at, ndcg_at, recall_at

__all__ = ["DEFAULT_GRID", "DEFAULT_METHOD", "Variant", "expand_grid", "encode_dataset", "run_study", "COLUMNS",
           "paired_to"]

GRID_HELP = """Grid file (JSON): shares of vectors to keep, codecs to evaluate, and methods:

  {"budgets": [0.5, 0.25, 0.1],
   "codecs": ["float16", "int8"],
   "methods": [
     {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "params": {"k": [-0.5, 0, 0.5]}},
     {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "budget": true},
     {"name": "indegree-mid", "pruner": "ratio", "signal": "indegree_mid", "budget": true},
     {"name": "random", "pruner": "random", "budget": true, "params": {"seed": 0}}]}

"pruner" is a registry name (colprune.PRUNERS); "params" are its parameters, and a list runs
one variant per value (lists of several parameters: every combination). With "budget": true a
method runs once per budget instead: ratio/random keep that share of each page, adaptive
searches k so the collection keeps that share overall. "signal" names the importance signal
to rank by (text encoder: cls, indegree, indegree_mid, norm, global_sim; image encoders: eos,
indegree, indegree_mid, global_sim), or a blend {"cls": 0.5, "global_sim": 0.5}: the weighted sum
of the signals, each min-max normalised per page (alpha*attention + (1-alpha)*similarity to the
global token). Mergers (ward, kmeans, pool1d, pool2d) take a budget like ratio does. The
unpruned index is always a row (method "none"); the built-in grid has DocPruner at several k
and at each budget, every signal at each budget, random, three mergers, and "default" (the
recommended method). Budgets are exact across the collection: the per-page share (or k) is
solved so that all methods keep the same number of vectors, special rows included."""

#: The method colprune recommends (docs/study-financebench.md): DocPruner's per-page rule (keep
#: the patches whose importance exceeds mean + k*std of their own page, k solved for the
#: collection budget) over the attention each patch *receives* in the last layer ("indegree").
#: On whole financebench-dev pages it keeps 0.230/0.202/0.225 nDCG@10 at 50/25/10% of the
#: vectors (unpruned 0.180, fixed-share Ward 0.167/0.179/0.182, random 0.175/0.181/0.151, one
#: mean vector per page 0.210); on MS MARCO 0.803/0.793/0.778 (Ward 0.807/0.803/0.800).
DEFAULT_METHOD = {"name": "default", "pruner": "adaptive", "signal": "indegree", "budget": True}

DEFAULT_GRID: dict[str, Any] = {
    "budgets": [0.5, 0.25, 0.1],
    "codecs": ["float16", "int8"],
    "methods": [
        {"name": "docpruner-k", "pruner": "adaptive", "signal": "cls", "params": {"k": [-0.5, -0.25, 0.0, 0.5, 1.0]}},
        {"name": "docpruner", "pruner": "adaptive", "signal": "cls", "budget": True},
        {"name": "docpruner-indegree", "pruner": "adaptive", "signal": "indegree", "budget": True},
        {"name": "cls-attention", "pruner": "ratio", "signal": "cls", "budget": True},
        {"name": "indegree", "pruner": "ratio", "signal": "indegree", "budget": True},
        {"name": "indegree-mid", "pruner": "ratio", "signal": "indegree_mid", "budget": True},
        {"name": "norm", "pruner": "ratio", "signal": "norm", "budget": True},
        {"name": "attn+sim", "pruner": "ratio", "signal": {"cls": 0.5, "global_sim": 0.5}, "budget": True},
        {"name": "random", "pruner": "random", "budget": True, "params": {"seed": 0}},
        {"name": "ward", "pruner": "ward", "budget": True},
        {"name": "kmeans", "pruner": "kmeans", "budget": True},
        {"name": "pool1d", "pruner": "pool1d", "budget": True},
        {"name": "adaptive-ward", "pruner": "adaptive-ward", "signal": "cls", "budget": True},
        {"name": "entropy-ward", "pruner": "entropy-ward", "signal": "cls", "budget": True},
        {"name": "entropy-top", "pruner": "entropy-top", "signal": "cls", "budget": True},
        DEFAULT_METHOD,
    ],
}

COLUMNS = ["method", "params", "keep_ratio", "codec", "bytes_per_page", "hit@1", "hit@5", "hit@10", "ndcg@5",
           "ndcg@10", "recall@10", "recall@100", "retention", "ndcg@10_lo", "ndcg@10_hi", "delta_ndcg@10", "delta_lo",
           "delta_hi", "queries"]
#: Reference rows (not pruned variants of the index): kept out of the Pareto frontier and plot.
REFERENCES = ("meanpool", "bm25")


@dataclass(frozen=True)
class Variant:
    """One pruned index to derive: a registry pruner, its parameters, the signal it ranks by."""

    method: str
    pruner: str
    params: dict = field(default_factory=dict)
    signal: str | dict | None = None
    budget: float | None = None

    @property
    def slug(self) -> str:
        """File name of the derived index: the configuration, not the method's name, so two
        methods that prune alike share one file."""
        parts = [self.pruner] + [f"{k}{v}" for k, v in sorted(self.params.items())]
        parts += [f"sig-{_sig_text(self.signal, '+')}"] if self.signal else []
        parts += [f"budget{self.budget}"] if self.budget is not None else []
        return "_".join(str(p) for p in parts).replace("/", "-")

    @property
    def label(self) -> str:
        bits = [f"{k}={v}" for k, v in sorted(self.params.items())]
        bits += [f"signal={_sig_text(self.signal, ' + ')}"] if self.signal else []
        bits += [f"budget={self.budget}"] if self.budget is not None else []
        return " ".join(bits)


def _sig_text(signal: str | dict, sep: str) -> str:
    return signal if isinstance(signal, str) else sep.join(f"{w:g}{k}" for k, w in signal.items())


def _sig_names(signal) -> list[str]:
    return [] if not signal else [signal] if isinstance(signal, str) else list(signal)


def expand_grid(grid: dict, *, budgets: Sequence[float] | None = None, methods: Sequence[str] | None = None) -> list[Variant]:
    """Variants of a grid (see the module docstring); ``methods`` keeps only those names."""
    budgets = list(budgets if budgets is not None else grid.get("budgets", DEFAULT_GRID["budgets"]))
    for b in budgets:
        if not 0 < b <= 1:
            raise InvalidInputError(f"budgets must be in (0, 1], got {b}")
    specs = list(grid.get("methods", []))
    if methods:
        if "default" in methods and not any(m["name"] == "default" for m in specs):
            specs.append(DEFAULT_METHOD)
        unknown = set(methods) - {m["name"] for m in specs}
        if unknown:
            raise InvalidInputError(f"unknown methods {sorted(unknown)}; the grid has {sorted({m['name'] for m in specs})}")
        specs = [m for m in specs if m["name"] in methods]
    out: list[Variant] = []
    for m in specs:
        if "name" not in m or "pruner" not in m:
            raise InvalidInputError(f"grid method needs 'name' and 'pruner': {m}")
        params = m.get("params", {})
        keys = sorted(params)
        combos = [dict(zip(keys, vals)) for vals in itertools.product(*[v if isinstance(v, list) else [v] for v in (params[k] for k in keys)])] or [{}]
        for combo in combos:
            if m.get("budget"):
                out += [Variant(m["name"], m["pruner"], combo, m.get("signal"), float(b)) for b in budgets]
            else:
                out.append(Variant(m["name"], m["pruner"], combo, m.get("signal")))
    return out


# -- encoding once -----------------------------------------------------------------------

def _encode_full(ds: Dataset, encoder_name: str, path: str, progress: bool, batch: int = 256,
                 quantize: str | None = None) -> None:
    from ..encoders import load_encoder

    kw = {} if quantize is None else {"quantize": quantize}

    if ds.pages_dir is not None:  # a folder of PDFs/images: the build pipeline, every signal kept
        from ..pipeline import build

        report = build([ds.pages_dir], path, model=encoder_name, signals=True, progress=progress,
                       commit_pages=64, commit_seconds=60.0, **kw)
        if report.skipped:
            print(report.warning_line())
        return
    ids = ds.doc_ids
    done: set[str] = set()
    if os.path.exists(path):
        with Index.open(path) as ix:
            if ix.encoder != encoder_name:
                raise InvalidInputError(f"{path} was encoded with {ix.encoder}, not {encoder_name}: use another --out")
            done = set(ix.ids)
    todo = [d for d in ids if d not in done]
    if not todo:
        return
    encoder = load_encoder(encoder_name, **kw)
    from tqdm.auto import tqdm

    index = Index.open(path, mode="a") if done else None
    try:
        for lo in tqdm(range(0, len(todo), batch), desc="encode corpus", unit="batch", disable=not progress):
            chunk = todo[lo : lo + batch]
            if ds.images:
                contents = [ds.image(d) for d in chunk]
            else:
                contents = [ds.corpus[d] for d in chunk]
            enc = encoder.encode_pages(contents)
            if index is None:
                names = sorted(enc[0].signals)
                index = Index.create(path, encoder.dim, "float16", encoder=encoder_name, signals=names, overwrite=True)
            index.add(chunk, [e.vectors for e in enc], [e.importance for e in enc], pruner="none",
                      patch_mask=[e.patch_mask for e in enc], grids=[e.grid for e in enc],
                      signals=[e.signals for e in enc], commit_every=batch)
    finally:
        if index is not None:
            index.close()


def _queries(ds: Dataset, encoder_name: str, out: str, qids: list[str], quantize: str | None = None) -> list[np.ndarray]:
    """The judged queries encoded by ``encoder_name`` (the page encoder, or a student of it),
    cached in ``out/queries.npz`` under that name (and its quantisation)."""
    cache = os.path.join(out, "queries.npz")
    tag = encoder_name if quantize is None else f"{encoder_name}+{quantize}"
    if os.path.exists(cache):
        with np.load(cache, allow_pickle=False) as z:
            if str(z["encoder"]) == tag and list(z["ids"]) == qids:
                return [z["vectors"][a:b] for a, b in zip(z["offsets"][:-1], z["offsets"][1:])]
    from ..encoders import load_encoder

    kw = {} if quantize is None else {"quantize": quantize}
    vecs = load_encoder(encoder_name, **kw).encode_queries([ds.queries[q] for q in qids])
    offsets = np.r_[0, np.cumsum([v.shape[0] for v in vecs])]
    np.savez(cache, vectors=np.concatenate(vecs), offsets=offsets, ids=np.array(qids), encoder=np.array(tag))
    return vecs


def encode_dataset(
    dataset: str | Dataset, encoder: str, out: str, *, progress: bool = True, query_encoder: str | None = None,
    quantize: str | None = None,
) -> tuple[str, list[np.ndarray], list[str]]:
    """Encode a dataset's corpus and judged queries once, cached under ``out``.

    Returns ``(path of the unpruned float16 index out/full.h5, query vectors, query ids)``.
    A second call with the same encoder reuses both caches (and finishes an interrupted
    corpus encoding). ``query_encoder``: a student folder distilled from ``encoder``
    (``colprune distill-queries``) encodes the queries instead; the pages stay ``encoder``'s.
    ``quantize="int8"``: pages and queries through the encoder's int8 dynamic quantisation
    (index ``out/full-int8.h5``).
    """
    if query_encoder is not None and quantize is not None:
        raise InvalidInputError("quantize applies to the page encoder's own queries, not to a student's")
    if query_encoder is not None:
        from ..encoders.student import read_config, same_teacher

        teacher = read_config(query_encoder)["config"]["teacher"]
        if not same_teacher(teacher, encoder):
            from ..errors import SettingsMismatchError

            raise SettingsMismatchError(f"the student {query_encoder} was distilled from {teacher!r}, not from the page "
                                        f"encoder {encoder!r}")
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    qids = ds.judged_queries
    if not qids:
        raise InvalidInputError(f"{ds.name}: no query has a relevant document in its qrels")
    os.makedirs(out, exist_ok=True)
    full_path = os.path.join(out, "full.h5" if quantize is None else f"full-{quantize}.h5")
    _encode_full(ds, encoder, full_path, progress, quantize=quantize)
    return full_path, _queries(ds, query_encoder or encoder, out, qids, quantize), qids


# -- variants ----------------------------------------------------------------------------

def _bisect(kept, budget: float, lo: float, hi: float, falling: bool) -> float:
    """The parameter in [lo, hi] at which ``kept(x)`` (monotone) crosses ``budget``."""
    for _ in range(50):
        mid = (lo + hi) / 2
        if (kept(mid) > budget) == falling:
            lo = mid
        else:
            hi = mid
    return hi if falling else lo


class _Collection:
    """What budget solving needs from the full index, read once: per page the patch count,
    the special-row count and each signal over the patches."""

    def __init__(self, full: Index) -> None:
        self.patches, self.special, self.signals = [], [], {k: [] for k in full.signal_names}
        for p in full.iter_pages():
            self.patches.append(int(p.patch_mask.sum()))
            self.special.append(int((~p.patch_mask).sum()))
            for k in full.signal_names:
                self.signals[k].append(p.signals[k][p.patch_mask].astype(np.float64))
        self.patches = np.array(self.patches)
        self.total = int(self.patches.sum() + sum(self.special))


def _budget_ratio(col: _Collection, budget: float) -> float:
    """The per-page patch share at which the collection keeps ``budget`` of its vectors,
    counting the special rows every page keeps (so all methods compare at equal storage)."""
    patches, total, fixed = col.patches, col.total, sum(col.special)

    def kept(r: float) -> float:
        return (fixed + np.maximum(1, np.minimum(patches, np.floor(r * patches + 0.5))).sum()) / total

    return round(min(1.0, max(_bisect(kept, budget, 1e-6, 1.0, falling=False), 1e-6)), 6)


def _budget_count(col: _Collection, v: Variant, budget: float) -> float:
    """For pruners whose per-page count comes from the page's attention (``budget_param``,
    ``n_keep``): the parameter at which the collection keeps ``budget`` of its vectors."""
    cls = PRUNERS[v.pruner]
    signal = v.signal or "cls"
    if not isinstance(signal, str):
        raise InvalidInputError(f"{v.pruner}: budget mode takes one signal, not a blend ({signal})")
    sigs = col.signals[signal]
    fixed = sum(col.special)

    def kept(x: float) -> float:
        pr = make_pruner(v.pruner, **{**v.params, cls.budget_param: x})
        return (fixed + sum(pr.n_keep(s) for s in sigs if s.size)) / col.total

    if cls.budget_rising:
        lo, hi = 1e-6, 1.0
        while kept(hi) < budget and hi < 1e6:
            lo, hi = hi, hi * 2
        return round(_bisect(kept, budget, lo, hi, falling=False), 6)
    return round(_bisect(kept, budget, -10.0, 10.0, falling=True), 4)


def _derive(full: Index, col: _Collection, v: Variant, folder: str, codec: str) -> Index:
    params = dict(v.params)
    if v.budget is not None:
        if hasattr(PRUNERS[v.pruner], "budget_param"):  # the page's attention sets its count
            params[PRUNERS[v.pruner].budget_param] = _budget_count(col, v, v.budget)
        elif "ratio" in make_pruner(v.pruner).params():  # share-based: ratio, random and the mergers
            params["ratio"] = _budget_ratio(col, v.budget)
        else:
            raise InvalidInputError(f"budget mode does not apply to pruner {v.pruner!r}")
    pruner = make_pruner(v.pruner, **params)
    path = os.path.join(folder, f"{v.slug}_{codec}.h5")
    want = pruner.config() | ({"signal": v.signal} if v.signal else {})
    if codec != "float16":  # prune once (float16), then only re-encode
        with _derive(full, col, v, folder, "float16") as base:
            return _cached(path, want, len(full), codec) or _reencode(base, path, want, codec)
    return _cached(path, want, len(full), codec) or full.derive(
        path, pruner, dtype=codec, overwrite=True, signal=v.signal, rerank=False)


def _reencode(base: Index, path: str, want: dict, codec: str) -> Index:
    # binary is judged as stored: Hamming MaxSim, no float16 rerank copy
    out = base.derive(path, "none", dtype=codec, overwrite=True, rerank=False)
    out.close()  # its pruner record is "none", derived_from what the vectors went through
    return Index.open(path)


def _cached(path: str, want: dict, n_docs: int, codec: str) -> Index | None:
    if os.path.exists(path):
        try:
            ix = Index.open(path)
            cfg = ix.pruner_config or {}
            if want in (cfg, cfg.get("derived_from")) and len(ix) == n_docs and ix.codec == codec:
                return ix
            ix.close()
        except (InvalidInputError, OSError):
            pass
    return None


# -- evaluation --------------------------------------------------------------------------

def _evaluate(index: Index, queries: list[np.ndarray], qids: list[str], ds: Dataset) -> dict[str, Any]:
    hits = index.search(queries, k=100)
    info = index.info()
    return {"per_query": _per_query([[h.id for h in hs] for hs in hits], qids, ds),
            "keep_ratio": info["keep_ratio"], "bytes_per_page": info["vector_bytes_per_page"]}


def _per_query(rankings: list[list[str]], qids: list[str], ds: Dataset) -> dict[str, list[float]]:
    per: dict[str, list[float]] = {m: [] for m in ("hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10", "recall@10", "recall@100")}
    for q, ranked in zip(qids, rankings):
        judged = ds.qrels.get(q, {})
        for k in (1, 5, 10):
            per[f"hit@{k}"].append(hit_at(ranked, judged, k))
        per["ndcg@5"].append(ndcg_at(ranked, judged, 5))
        per["ndcg@10"].append(ndcg_at(ranked, judged, 10))
        per["recall@10"].append(recall_at(ranked, judged, 10))
        per["recall@100"].append(recall_at(ranked, judged, 100))
    return per


# -- reference rows: one vector per page, and BM25 over the page text ----------------------

def _meanpool(full: Index, queries: list[np.ndarray], qids: list[str], ds: Dataset) -> dict[str, Any]:
    """One vector per page: the mean of its token vectors before normalisation (the ``norm``
    signal restores each token's length when the index has it), L2-normalised: what a
    single-vector index of the same encoder stores. MaxSim against one vector ranks a query
    by the dot product of its summed token vectors with it."""
    ids, vecs, n_vectors = [], [], 0
    for p in full.iter_pages():
        v = p.vectors.astype(np.float32)
        if "norm" in full.signal_names:
            v = v * p.signals["norm"][:, None].astype(np.float32)
        m = v.mean(axis=0)
        vecs.append(m / max(float(np.linalg.norm(m)), 1e-12))
        ids.append(p.id)
        n_vectors += p.vectors.shape[0]
    d = np.stack(vecs).astype(np.float16).astype(np.float32)
    q = np.stack([qv.sum(axis=0) for qv in queries])
    order = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :100]
    rankings = [[ids[i] for i in row] for row in order]
    return {"per_query": _per_query(rankings, qids, ds), "keep_ratio": len(ids) / n_vectors,
            "bytes_per_page": 2.0 * full.dim}


def _bm25(ds: Dataset, qids: list[str]) -> dict[str, Any] | None:
    texts = ds.page_texts()
    if not any(t.strip() for t in texts.values()):
        return None
    ids = list(texts)
    rankings = bm25_rank([texts[i] for i in ids], [ds.queries[q] for q in qids], k=100)
    return {"per_query": _per_query([[ids[i] for i in r] for r in rankings], qids, ds),
            "keep_ratio": float("nan"), "bytes_per_page": float("nan")}


def run_study(
    dataset: str,
    encoder: str,
    out: str,
    *,
    grid: dict | None = None,
    budgets: Sequence[float] | None = None,
    methods: Sequence[str] | None = None,
    codecs: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    references: bool = True,
    log_rows: bool = False,
    query_encoder: str | None = None,
    quantize: str | None = None,
    paired_reference: str | None = None,
) -> list[dict[str, Any]]:
    """Run a study and write ``out/results.csv``, ``results.md``, ``per_query.csv`` and
    ``pareto.png``; returns the rows.

    Every row has hit@1/5/10, nDCG@5/10 (with a 95% bootstrap interval over queries), recall,
    and the paired difference of nDCG@10 to the unpruned index per query (mean and 95%
    bootstrap interval of the differences). ``references`` adds two rows a user would weigh:
    ``meanpool`` (one vector per page) and ``bm25`` over the page text. ``query_encoder``: a
    student of ``encoder`` encodes the queries (the pages stay ``encoder``'s). ``quantize``:
    ``"int8"`` encodes pages and queries with the encoder's int8 dynamic quantisation.
    ``paired_reference``: a method of the grid (``"ward"``, say); ``results.md`` then also gives
    every method's paired difference to it at the same budget and codec (:func:`paired_to`).
    """
    from tqdm.auto import tqdm

    grid = grid or DEFAULT_GRID
    codecs = list(codecs or grid.get("codecs", ["float16"]))
    variants = expand_grid(grid, budgets=budgets, methods=methods)
    ds = load_dataset(dataset)
    full_path, queries, qids = encode_dataset(ds, encoder, out, progress=progress, query_encoder=query_encoder,
                                             quantize=quantize)
    variants_dir = os.path.join(out, "variants" if quantize is None else f"variants-{quantize}")
    os.makedirs(variants_dir, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with Index.open(full_path) as full:
        # the global-token signal is "cls" for text encoders and "eos" for image encoders
        have = set(full.signal_names)
        alias = {"cls": "eos", "eos": "cls"}

        def resolve(sig):
            if isinstance(sig, dict):
                return {resolve(k): w for k, w in sig.items()}
            return sig if sig in have or alias.get(sig) not in have else alias[sig]

        variants = [Variant(v.method, v.pruner, v.params, resolve(v.signal), v.budget) if v.signal else v for v in variants]
        skipped = sorted({n for v in variants for n in _sig_names(v.signal) if n not in have})
        if skipped:
            log(f"skipping methods on signals this encoder does not give: {skipped} (it has {sorted(have)})")
            variants = [v for v in variants if all(n in have for n in _sig_names(v.signal))]
        dim = full.dim
        col = _Collection(full)
        base = _evaluate(full, queries, qids, ds)
        base_per = base["per_query"]["ndcg@10"]
        rows.append(_row("none", "", base, "float16", base_per, dim))
        if references:
            rows.append(_row("meanpool", "one vector per page", _meanpool(full, queries, qids, ds), "float16", base_per, dim))
            bm = _bm25(ds, qids)
            if bm is not None:
                rows.append(_row("bm25", "page text, k1=1.2 b=0.75", bm, "-", base_per, dim))
        for v in tqdm(variants, desc="variants", unit="variant", disable=not progress):
            for codec in codecs:
                with _derive(full, col, v, variants_dir, codec) as ix:
                    rows.append(_row(v.method, v.label, _evaluate(ix, queries, qids, ds), codec, base_per, dim))
                if log_rows:
                    r = rows[-1]
                    log(f"{r['method']:>16} {r['params']:<40} {codec:<8} keep {r['keep_ratio']:.3f} nDCG@10 {r['ndcg@10']:.3f} "
                        f"hit@10 {r['hit@10']:.3f} delta {r['delta_ndcg@10']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}]")
    name = encoder if quantize is None else f"{encoder} ({quantize} dynamic quantisation)"
    tag = "" if quantize is None else f"-{quantize}"  # a quantised run never overwrites the float one's outputs
    _write(rows, out, ds.name, name if query_encoder is None else f"{encoder}, queries from {query_encoder}", len(qids),
           tag)
    with open(os.path.join(out, f"per_query{tag}.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "params", "codec", "query_id", "ndcg@10"])
        for r in rows:
            w.writerows([r["method"], r["params"], r["codec"], q, round(v, 5)] for q, v in zip(qids, r["_per_query"]))
    if paired_reference is not None:
        table = paired_to(os.path.join(out, f"per_query{tag}.csv"), paired_reference)
        with open(os.path.join(out, f"results{tag}.md"), "a") as f:
            f.write(f"\n## Paired difference to {paired_reference} at the same budget\n\n"
                    f"Per query, nDCG@10 of the method minus that of {paired_reference} at the same share of vectors "
                    "and codec: mean and 95% bootstrap interval of the differences.\n\n"
                    f"| method | budget | codec | Δ nDCG@10 to {paired_reference} [95% CI] |\n|---|---|---|---|\n")
            f.writelines(f"| {t['method']} | {t['budget']} | {t['codec']} | {t['delta']:+.3f} "
                         f"[{t['lo']:+.3f}, {t['hi']:+.3f}] |\n" for t in table)
    log(f"wrote {os.path.join(out, f'results{tag}.csv')}, results{tag}.md and pareto{tag}.png ({len(rows)} rows, "
        f"{len(qids)} queries)")
    return rows


def _budget_of(params: str) -> str | None:
    for part in params.split():
        if part.startswith("budget="):
            return part.split("=", 1)[1]
    return None


def paired_to(per_query_csv: str, reference: str) -> list[dict[str, Any]]:
    """Each budgeted method's paired difference of nDCG@10 to ``reference`` at the same budget.

    Reads a study's ``per_query.csv``; for every method row whose params carry ``budget=b``
    and a row of ``reference`` with the same budget and codec, returns ``{"method", "budget",
    "codec", "delta", "lo", "hi", "queries"}``: the mean per-query difference and its 95%
    percentile bootstrap interval. Raises :class:`InvalidInputError` when ``reference`` has no
    budgeted row.
    """
    per: dict[tuple[str, str, str], dict[str, float]] = {}
    with open(per_query_csv, newline="") as f:
        for r in csv.DictReader(f):
            b = _budget_of(r["params"])
            if b is not None:
                per.setdefault((r["method"], b, r["codec"]), {})[r["query_id"]] = float(r["ndcg@10"])
    refs = {(b, c): v for (m, b, c), v in per.items() if m == reference}
    if not refs:
        raise InvalidInputError(f"{per_query_csv}: no budgeted rows of method {reference!r} to pair with")
    out = []
    for (m, b, c), v in per.items():
        if m == reference or (b, c) not in refs:
            continue
        qs = sorted(set(v) & set(refs[b, c]))
        diff = np.array([v[q] - refs[b, c][q] for q in qs])
        lo, hi = bootstrap_ci(diff)
        out.append({"method": m, "budget": float(b), "codec": c, "delta": round(float(diff.mean()), 4),
                    "lo": round(lo, 4), "hi": round(hi, 4), "queries": len(qs)})
    return out


def _row(method: str, params: str, ev: dict, codec: str, base_per: list[float], dim: int) -> dict[str, Any]:
    per = ev["per_query"]
    lo, hi = bootstrap_ci(per["ndcg@10"])
    n10 = float(np.mean(per["ndcg@10"]))
    base_ndcg = float(np.mean(base_per))
    diff = np.asarray(per["ndcg@10"]) - np.asarray(base_per)
    dlo, dhi = bootstrap_ci(diff)
    mean = lambda k: round(float(np.mean(per[k])), 4)  # noqa: E731
    return {
        "method": method, "params": params, "keep_ratio": round(float(ev["keep_ratio"]), 4), "codec": codec,
        "bytes_per_page": round(float(ev["bytes_per_page"]), 1),
        "hit@1": mean("hit@1"), "hit@5": mean("hit@5"), "hit@10": mean("hit@10"),
        "ndcg@5": mean("ndcg@5"), "ndcg@10": round(n10, 4),
        "recall@10": mean("recall@10"), "recall@100": mean("recall@100"),
        "retention": round(n10 / base_ndcg, 4) if base_ndcg else float("nan"),
        "ndcg@10_lo": round(lo, 4), "ndcg@10_hi": round(hi, 4),
        "delta_ndcg@10": round(float(diff.mean()), 4), "delta_lo": round(dlo, 4), "delta_hi": round(dhi, 4),
        "queries": len(per["ndcg@10"]),
        "_per_query": per["ndcg@10"],
    }


# -- outputs -----------------------------------------------------------------------------

def _write(rows: list[dict[str, Any]], out: str, dataset: str, encoder: str, n_queries: int, tag: str = "") -> None:
    with open(os.path.join(out, f"results{tag}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    frontier = pareto_frontier(rows)
    with open(os.path.join(out, f"results{tag}.md"), "w") as f:
        f.write(f"# Study: {dataset}, encoder {encoder}, {n_queries} judged queries\n\n")
        f.write("nDCG@10 interval: 95% bootstrap over queries. Δ: the paired difference of nDCG@10 to the unpruned "
                "index, per query, mean and 95% bootstrap interval. Retention: nDCG@10 / unpruned. "
                "Bytes: stored vector bytes per page. * = on the Pareto frontier (no row is both smaller and better). "
                "meanpool: one vector per page; bm25: over the page text (no vectors).\n\n")
        f.write("| method | params | codec | keep | bytes/page | hit@1 | hit@5 | hit@10 | nDCG@10 [95% CI] | Δ nDCG@10 [95% CI] | retention |\n")
        f.write("|---|---|---|---|---|---|---|---|---|---|---|\n")
        for i, r in enumerate(rows):
            star = " *" if i in frontier else ""
            keep = "-" if r["keep_ratio"] != r["keep_ratio"] else f"{r['keep_ratio']:.1%}"
            size = "-" if r["bytes_per_page"] != r["bytes_per_page"] else f"{r['bytes_per_page']:,.0f}"
            f.write(f"| {r['method']}{star} | {r['params']} | {r['codec']} | {keep} | {size} | "
                    f"{r['hit@1']:.3f} | {r['hit@5']:.3f} | {r['hit@10']:.3f} | "
                    f"{r['ndcg@10']:.3f} [{r['ndcg@10_lo']:.3f}, {r['ndcg@10_hi']:.3f}] | "
                    f"{r['delta_ndcg@10']:+.3f} [{r['delta_lo']:+.3f}, {r['delta_hi']:+.3f}] | {r['retention']:.1%} |\n")
    pareto_plot(rows, os.path.join(out, f"pareto{tag}.png"), f"{dataset} ({encoder}, {n_queries} queries)")


def pareto_frontier(rows: list[dict[str, Any]]) -> set[int]:
    """Indices of rows no other row beats on both bytes (fewer) and nDCG@10 (higher)."""
    keep = set()
    rows = [r if r.get("method") not in REFERENCES else {**r, "bytes_per_page": float("inf"), "ndcg@10": float("-inf")}
            for r in rows]
    for i, r in enumerate(rows):
        if rows[i]["bytes_per_page"] == float("inf"):
            continue
        if not any((o["bytes_per_page"] <= r["bytes_per_page"] and o["ndcg@10"] > r["ndcg@10"])
                   or (o["bytes_per_page"] < r["bytes_per_page"] and o["ndcg@10"] >= r["ndcg@10"]) for o in rows):
            keep.add(i)
    return keep


def pareto_plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Bytes per page (log) against nDCG@10, one line per method and codec, the frontier marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5))
    styles = {"float16": ("-", "o"), "int8": ("--", "s"), "binary": (":", "^")}
    rows = [r for r in rows if r["method"] not in REFERENCES]
    methods = sorted({r["method"] for r in rows} - {"none"})
    palette = plt.get_cmap("tab20")
    colors = {m: ("black" if m == "default" else palette(i % 20)) for i, m in enumerate(m for m in methods if m != "default")}
    colors["default"] = "black"
    for method in methods:
        for codec, (ls, marker) in styles.items():
            rs = sorted((r for r in rows if r["method"] == method and r["codec"] == codec), key=lambda r: r["bytes_per_page"])
            if rs:
                ax.plot([r["bytes_per_page"] for r in rs], [r["ndcg@10"] for r in rs], linestyle=ls, marker=marker,
                        color=colors[method], linewidth=2.2 if method == "default" else 1.2, markersize=4, alpha=0.9)
    front = sorted((rows[i] for i in pareto_frontier(rows)), key=lambda r: r["bytes_per_page"])
    ax.plot([r["bytes_per_page"] for r in front], [r["ndcg@10"] for r in front], color="gray", linewidth=6,
            alpha=0.25, zorder=0)
    from matplotlib.lines import Line2D

    method_legend = ax.legend([Line2D([], [], color=colors[m], linewidth=2) for m in methods], methods,
                              title="method", fontsize=8, loc="lower right", ncol=2)
    ax.add_artist(method_legend)
    ax.legend([Line2D([], [], color="gray", linestyle=ls, marker=mk) for ls, mk in styles.values()]
              + [Line2D([], [], color="gray", linewidth=6, alpha=0.25)], list(styles) + ["Pareto frontier"],
              title="codec", fontsize=8, loc="lower left")
    base = next(r for r in rows if r["method"] == "none")
    ax.axhline(base["ndcg@10"], color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("stored vector bytes per page (log)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
