"""The distributed build on Ray: list → read → encode (actor pool) → prune and write (one writer per shard).

Stages, each a Ray Data operator over small records:

1. **List** (CPU tasks): one task per file records its pages (id, page number, sha256)
   with :func:`colprune.pipeline.list_pages` (:mod:`~colprune.distributed.raypages`).
2. **Read** (CPU tasks): :func:`colprune.pipeline.read_pages` extracts each page's text or
   renders its image (the same reader the one-machine build runs).
3. **Encode** (an actor pool of ``workers`` actors, one model each; ``num_gpus`` per actor
   on a cluster with GPUs): ``encoder.encode_pages`` (:mod:`~colprune.distributed.rayencode`).
4. **Route** (CPU tasks): sends each page to the writer actor of its bucket
   (:func:`~colprune.distributed.manifest.shard_of`), waiting for the write (backpressure).
5. **Write** (one actor per bucket, the only writer of that shard): ``Index.add`` prunes and
   commits. A new shard is written under a temporary name (``.tmp-shard-NNNNN-RUN``) and
   renamed when it is closed; then the driver names it in the sharded manifest (one atomic
   write). Pages go into an existing shard as ordinary atomic commits
   (:mod:`~colprune.distributed.raywrite`).

Resumable: pages already in any shard (and pages a shard recorded as skipped, unless
``retry_skipped``) are not read again. A read, encode or route task lost to a worker or node
failure is retried by Ray (Ray Data's default); writers drop pages they already hold, so a
retried batch is not written twice, and a writer actor that dies is restarted (twice at most)
and reopens its temporary shard. A run killed
midway leaves new shards under temporary names, never named by the manifest; the next writer
removes them. A writer commits every ``commit_every`` pages it holds and at the end; pages a
writer held uncommitted when it was lost are not in any shard, so the next run builds them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError
from . import manifest as SM
from .ray_search import ensure_ray
from .rayencode import EncodeStage
from .raypages import list_file, page_row, read_batch
from .raywrite import run_writers
from .sharded import ShardedIndex
from .writes import shard_settings

__all__ = ["build", "build_embeddings", "DistributedBuildReport"]


@dataclass
class DistributedBuildReport:
    """What a distributed build did (the fields of :class:`colprune.pipeline.BuildReport`, plus the layout)."""

    output: str = ""
    indexed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    already_present: int = 0
    pages_total: int = 0
    seconds: float = 0.0
    workers: int = 0
    n_shards: int = 0
    shards_written: list[int] = field(default_factory=list)

    @property
    def pages_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        bits = [f"indexed {self.indexed} pages in {self.seconds:.1f} s ({self.pages_per_second:.2f} pages/s) "
                f"with {self.workers} encoder worker(s) into {len(self.shards_written)} of {self.n_shards} shards"]
        if self.skipped:
            bits.append(f"skipped {len(self.skipped)}")
        if self.already_present:
            bits.append(f"{self.already_present} already in the collection")
        return f"{self.output}: " + ", ".join(bits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pages_per_second": self.pages_per_second}


# -- the target collection -------------------------------------------------------------------

def _open_target(output: str, n_shards: int | None, settings: dict[str, Any], overwrite: bool,
                 default_shards: int) -> ShardedIndex:
    """``output`` open for writing: the existing collection (its settings checked) or a new one.

    An existing collection's settings are checked by the one settings check of every build
    (:func:`colprune.pipeline.check_settings`: :class:`~colprune.errors.SettingsMismatchError`).
    """
    from ..pipeline import check_settings
    from ..pruning import make_pruner

    if os.path.exists(output) and not overwrite:
        if not SM.is_sharded(output):
            raise InvalidInputError(f"{output} exists and is not a sharded colprune collection; pick another output")
        sh = ShardedIndex.open(output, mode="a")
        try:
            check_settings(sh, dtype=settings["codec"], encoder=settings.get("encoder") or None, dim=settings["dim"],
                           pruner=None if settings.get("pruner") is None else make_pruner(settings["pruner"]), shown=output)
            if n_shards is not None and n_shards != sh.n_shards:
                raise InvalidInputError(f"{output} already holds a sharded collection with {sh.n_shards} shards (this build "
                                        f"asks for {n_shards}; the count is fixed at creation). Add to it with its own "
                                        "count, or write a new one (another output, or overwrite)")
        except BaseException:
            sh.close()
            raise
        return sh
    return ShardedIndex.create(output, n_shards=n_shards or default_shards, overwrite=overwrite, **{
        "dim": settings["dim"], "dtype": settings["codec"], "encoder": settings.get("encoder"),
        "pruner": settings.get("pruner"), "signals": settings.get("signals", ()), "merged": settings.get("merged", False),
        "rerank": settings.get("rerank", True), "summary_centroids": settings.get("summary_centroids", 4)})


# -- the build's steps on the driver ---------------------------------------------------------

def _resources(ray, workers: int, num_gpus: float | None) -> tuple[float, float]:
    """CPUs per encoder actor and per small task, so that reads and routes still fit a small local Ray."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_worker = 1.0 if num_gpus else min(1.0, max(0.1, (cpus - 0.5) / max(1, workers)))
    return per_worker, 0.1


def _check_args(workers: int, n_shards: int | None, limit: int | None) -> int:
    workers = int(workers)
    if workers < 1:
        raise InvalidInputError(f"workers must be at least 1, got {workers}")
    if n_shards is not None and (isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1):
        raise InvalidInputError(f"n_shards must be an integer >= 1, got {n_shards!r}")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    return workers


def _list_jobs(rd, inputs: list[str], id_root: str | None, strict: bool, workers: int,
               report: DistributedBuildReport) -> list[dict]:
    """Every page of ``inputs`` as a row (one listing task per file), in listing order; skipped files go to ``report``."""
    from ..pipeline import list_files

    files = list_files(list(inputs), id_root)
    listed: list[dict] = []
    if files:
        items = [{"order": i, "path": p, "root": r, "strict": strict} for i, (p, r) in enumerate(files)]
        listed = rd.from_items(items, override_num_blocks=min(len(items), 4 * workers)).flat_map(
            list_file, num_cpus=0.1).take_all()
    listed.sort(key=lambda r: (r["order"], r["page"]))
    jobs, seen = [], {}
    for r in listed:
        if r["reason"]:
            if r["reason"] != "no pages":
                report.skipped[r["id"]] = r["reason"]
            continue
        if r["id"] in seen and seen[r["id"]] != r["path"]:
            raise InvalidInputError(f"{seen[r['id']]} and {r['path']} both give the page id {r['id']!r}; "
                                    "pass id_root (CLI --id-root) to a folder above both inputs")
        seen[r["id"]] = r["path"]
        jobs.append(r)
    report.pages_total = len(jobs)
    return jobs


def _encoder_dim(model: str, encoder_factory: Callable[[], Any] | None) -> tuple[int, str]:
    """The encoder's output dimension and name, from its config when it can be read (else loaded once here)."""
    from ..pipeline import model_dim

    enc_name = getattr(encoder_factory, "name", None) or model
    dim = model_dim(model) if encoder_factory is None else getattr(encoder_factory, "dim", None)
    if dim is None:
        if encoder_factory is not None:
            probe = encoder_factory()
        else:
            from ..encoders import load_encoder

            probe = load_encoder(model)
        dim, enc_name = probe.dim, (probe.name or enc_name)
    return dim, enc_name


def _input_kind(model: str, encoder_factory: Callable[[], Any] | None) -> str:
    """What the encoder reads: ``"text"`` or ``"image"``."""
    if encoder_factory is not None:
        kind = getattr(encoder_factory, "input_kind", None)
        return kind if kind is not None else encoder_factory().input_kind
    return "text" if model == "minilm" or _is_text(model) else "image"


def _is_text(model: str) -> bool:
    try:
        from ..encoders import TEXT_MODEL_TYPES, model_type_of

        return model_type_of(model) in TEXT_MODEL_TYPES
    except Exception:  # noqa: BLE001 - an unreadable config: the image path, as before
        return False


def _todo(sh: ShardedIndex, jobs: list[dict], report: DistributedBuildReport, retry_skipped: bool,
          limit: int | None) -> list[dict]:
    """The jobs this run builds, each given its bucket: not in any shard, not recorded as skipped (unless
    ``retry_skipped``), at most ``limit``. Counts what it leaves out in ``report``."""
    done = set(sh.ids)
    recorded = sh.skipped
    todo = []
    for r in jobs:
        if r["id"] in done:
            report.already_present += 1
        elif r["id"] in recorded and not retry_skipped:
            report.skipped[r["id"]] = recorded[r["id"]]
        else:
            todo.append(r)
    if limit is not None:
        todo = todo[:limit]
    for r in todo:
        r["bucket"] = SM.shard_of(r["id"], sh.n_shards)
    return todo


def _encoded(rd, todo: list[dict], *, kind: str, dpi: int, batch_size: int, model: str,
             encoder_factory: Callable[[], Any] | None, importance: str | None, workers: int, num_gpus: float | None,
             per_worker: float, small: float):
    """The dataset of encoded page rows: read tasks, then the encode actor pool."""
    cols = ("id", "bucket", "path", "page", "kind", "sha256")
    ds = rd.from_items([{k: r[k] for k in cols} for r in todo],
                       override_num_blocks=max(1, min(len(todo) // max(1, batch_size), 64)))
    ds = ds.map_batches(read_batch, fn_kwargs={"kind": kind, "dpi": dpi}, batch_size=batch_size,
                        batch_format="numpy", num_cpus=small)
    load_kwargs: dict[str, Any] = {} if importance is None else {"importance": importance}
    enc_opts: dict[str, Any] = {"num_cpus": per_worker}
    if num_gpus:
        load_kwargs["device"] = "cuda"  # each actor sees the GPU(s) Ray assigned it as cuda:0...
        enc_opts["num_gpus"] = num_gpus
    return ds.map_batches(EncodeStage, fn_constructor_kwargs={"model": model, "encoder_factory": encoder_factory,
                                                              "load_kwargs": load_kwargs, "want_signals": False},
                          batch_size=batch_size, batch_format="numpy", compute=rd.ActorPoolStrategy(size=workers),
                          **enc_opts)


# -- the public builds -----------------------------------------------------------------------

# long: the documented signature and docstring take 58 of its lines; the steps are the functions above
def build(
    inputs: Sequence[str],
    output: str,
    *,
    model: str = "minilm",
    encoder_factory: Callable[[], Any] | None = None,
    pruner: Any = None,
    dtype: str = "float16",
    n_shards: int | None = None,
    workers: int = 1,
    num_gpus: float | None = None,
    id_root: str | None = None,
    strict: bool = False,
    retry_skipped: bool = False,
    dpi: int = 144,
    batch_size: int = 16,
    commit_every: int = 256,
    limit: int | None = None,
    importance: str | None = None,
    overwrite: bool = False,
    address: str | None = None,
    progress: bool = False,
) -> DistributedBuildReport:
    """Build (or extend) the sharded collection ``output`` from PDFs, images and text files on Ray.

    Parameters
    ----------
    inputs : files and folders, as :func:`colprune.pipeline.build` takes them (same page ids)
    output : the sharded collection directory; extended when it exists (unless ``overwrite``)
    model : encoder name (``"minilm"``), local path or hub id, loaded once per encode actor
    encoder_factory : instead of ``model``: a picklable callable returning an encoder
        (an object with ``name``, ``dim``, ``input_kind`` and ``encode_pages``)
    pruner : a :class:`~colprune.pruning.Pruner`, registry name or config (default: none,
        a full collection; an existing collection's own pruner when extending it)
    dtype : vector codec of the shards; a residual one (``residual2``...) makes each shard train
        its own codebook on its first commit (``commit_every`` pages of that shard)
    n_shards : buckets of a new collection (default ``workers``); fixed once created
    workers : encode actors (one model each)
    num_gpus : GPUs per encode actor (e.g. 1 on a GPU cluster; default none)
    id_root, strict, retry_skipped, dpi, importance : as :func:`colprune.pipeline.build` (shards
        store the importance signal only, not every signal: no ``signals=`` here; a new
        collection with a pruner records the signal in its settings)
    batch_size : pages per read task and per encoder call
    commit_every : pages per commit in a shard
    limit : build at most this many new pages (in listing order) this run
    overwrite : replace ``output``
    address : Ray cluster address (default: the Ray already initialised, else a local one)
    progress : show Ray Data's progress bars

    Returns
    -------
    DistributedBuildReport
    """
    from ..pipeline import DEFAULT_IMPORTANCE, check_signal

    t0 = time.perf_counter()
    workers = _check_args(workers, n_shards, limit)
    inputs = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    output = os.path.abspath(os.fspath(output))
    ray = ensure_ray(address)
    import ray.data as rd

    rd.DataContext.get_current().enable_progress_bars = bool(progress)
    report = DistributedBuildReport(output=output, workers=workers)
    jobs = _list_jobs(rd, inputs, id_root, strict, workers, report)
    dim, enc_name = _encoder_dim(model, encoder_factory)
    new_target = overwrite or not os.path.exists(output)
    if importance is None and encoder_factory is None and new_target:
        importance = DEFAULT_IMPORTANCE
    settings = shard_settings(dim, dtype, enc_name, pruner, (), None, importance if new_target else None)
    sh = _open_target(output, n_shards, settings, overwrite, workers)
    try:
        held_signal = (sh.settings.get("pruner") or {}).get("signal")
        check_signal(output, held_signal, importance)
        report.n_shards = sh.n_shards
        todo = _todo(sh, jobs, report, retry_skipped, limit)
        if todo:
            per_worker, small = _resources(ray, workers, num_gpus)
            ds = _encoded(rd, todo, kind=_input_kind(model, encoder_factory), dpi=dpi, batch_size=batch_size, model=model,
                          encoder_factory=encoder_factory, importance=held_signal or importance, workers=workers,
                          num_gpus=num_gpus, per_worker=per_worker, small=small)
            written, shards, skipped = run_writers(ray, sh, ds, {r["bucket"] for r in todo}, commit_every, small)
            report.indexed, report.shards_written = written, shards
            report.skipped.update(skipped)
    finally:
        sh.close()
    report.seconds = time.perf_counter() - t0
    return report


def build_embeddings(
    output: str,
    ids: Sequence[str],
    embeddings: Sequence[np.ndarray],
    importance: Sequence[np.ndarray] | None = None,
    *,
    metadata: Sequence[dict] | None = None,
    pruner: Any = None,
    dtype: str = "float16",
    n_shards: int | None = None,
    workers: int = 1,
    encoder: str | None = None,
    commit_every: int = 256,
    overwrite: bool = False,
    address: str | None = None,
) -> DistributedBuildReport:
    """Write precomputed pages into the sharded collection ``output`` with the build's writers.

    The route and write stages of :func:`build` only: pages are sent (in Ray Data blocks)
    to one writer actor per bucket, which prunes and commits them. ``workers`` sets the
    number of blocks routed at once; ``n_shards`` (default ``workers``) the buckets of a new
    collection. ``embeddings``: ``n`` float arrays ``(n_i, dim)``; ``importance``: ``(n_i,)``.
    """
    t0 = time.perf_counter()
    ids = [str(i) for i in ids]
    n = len(ids)
    if len(embeddings) != n or (importance is not None and len(importance) != n) or (metadata is not None and len(metadata) != n):
        raise InvalidInputError("ids, embeddings, importance and metadata must have one entry per page")
    if not n:
        raise InvalidInputError("no pages to write")
    dim = int(np.asarray(embeddings[0]).shape[1])
    ray = ensure_ray(address)
    import ray.data as rd

    rd.DataContext.get_current().enable_progress_bars = False
    output = os.path.abspath(os.fspath(output))
    report = DistributedBuildReport(output=output, workers=int(workers), pages_total=n)
    sh = _open_target(output, n_shards, shard_settings(dim, dtype, encoder, pruner, (), None), overwrite, int(workers))
    try:
        report.n_shards = sh.n_shards
        rows = []
        present = set(sh.ids)
        for i, page_id in enumerate(ids):
            if page_id in present:
                report.already_present += 1
                continue
            row = page_row(embeddings[i], None if importance is None else importance[i], None, None, None)
            row.update(id=page_id, bucket=SM.shard_of(page_id, sh.n_shards), reason="",
                       metadata=json.dumps({} if metadata is None else metadata[i]))
            rows.append(row)
        if rows:
            ds = rd.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * int(workers))))
            written, shards, _ = run_writers(ray, sh, ds, {r["bucket"] for r in rows}, commit_every, 0.1)
            report.indexed, report.shards_written = written, shards
    finally:
        sh.close()
    report.seconds = time.perf_counter() - t0
    return report
