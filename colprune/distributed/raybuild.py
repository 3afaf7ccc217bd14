"""The distributed build on Ray: list → read → encode (actor pool) → prune and write (one writer per shard).

Stages, each a Ray Data operator over small records:

1. **List** (CPU tasks): one task per file records its pages (id, page number, sha256)
   with :func:`colprune.pipeline.list_pages`.
2. **Read** (CPU tasks): :func:`colprune.pipeline._read_pages` extracts each page's text or
   renders its image (the same reader the one-machine build runs).
3. **Encode** (an actor pool of ``workers`` actors, one model each; ``num_gpus`` per actor
   on a cluster with GPUs): ``encoder.encode_pages``.
4. **Route** (CPU tasks): sends each page to the writer actor of its bucket
   (:func:`~colprune.distributed.manifest.shard_of`), waiting for the write (backpressure).
5. **Write** (one actor per bucket, the only writer of that shard): ``Index.add`` prunes and
   commits. A new shard is written under a temporary name (``.tmp-shard-NNNNN-RUN``) and
   renamed when it is closed; then the driver names it in the sharded manifest (one atomic
   write). Pages go into an existing shard as ordinary atomic commits.

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
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InvalidInputError
from . import manifest as SM

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


# -- stage bodies (run in Ray workers) ------------------------------------------------------

def _list_file(row: dict[str, Any]) -> list[dict[str, Any]]:
    from ..encoders import PageError
    from ..pipeline import list_pages, page_id

    skipped: dict[str, str] = {}
    try:
        jobs = list_pages([row["path"]], id_root=row["root"], strict=bool(row["strict"]), skipped=skipped)
    except PageError as e:
        raise InvalidInputError(str(e)) from None
    out = [{"order": int(row["order"]), "id": j.id, "path": j.path, "page": j.page, "kind": j.kind, "sha256": j.sha256,
            "reason": ""} for j in jobs]
    for key, why in skipped.items():
        out.append({"order": int(row["order"]), "id": key, "path": row["path"], "page": 0, "kind": "", "sha256": "",
                    "reason": why})
    if not out:  # a PDF with pages always yields rows; keep the schema for an empty file list
        out.append({"order": int(row["order"]), "id": page_id(row["path"], row["root"], None), "path": row["path"],
                    "page": 0, "kind": "", "sha256": "", "reason": "no pages"})
    return out


def _read_batch(batch: dict[str, np.ndarray], kind: str, dpi: int) -> dict[str, np.ndarray]:
    """Read/render a batch of pages: content as bytes (UTF-8 text, or raw RGB with its height and width)."""
    from ..pipeline import PageJob, _read_pages

    jobs = [PageJob(str(i), str(p), int(n), str(k), str(s))
            for i, p, n, k, s in zip(batch["id"], batch["path"], batch["page"], batch["kind"], batch["sha256"])]
    content, height, width, reasons = [], [], [], []
    for job, c, reason in _read_pages(jobs, kind, dpi):
        if reason is not None:
            content.append(b"")
            height.append(0)
            width.append(0)
            reasons.append(reason)
        elif isinstance(c, str):
            content.append(c.encode("utf-8"))
            height.append(0)
            width.append(0)
            reasons.append("")
        else:
            arr = np.asarray(c.convert("RGB"), np.uint8)
            content.append(arr.tobytes())
            height.append(arr.shape[0])
            width.append(arr.shape[1])
            reasons.append("")
    out = {k: batch[k] for k in ("id", "bucket", "path", "page", "kind", "sha256")}
    out.update(content=np.array(content, dtype=object), height=np.array(height, np.int64),
               width=np.array(width, np.int64), reason=np.array(reasons, dtype=object))
    return out


def _page_row(enc_vectors, importance, patch_mask, grid, signals) -> dict[str, Any]:
    vec = np.ascontiguousarray(np.asarray(enc_vectors, np.float32))
    return {"n": vec.shape[0], "vectors": vec.tobytes(),
            "importance": b"" if importance is None else np.asarray(importance, np.float32).tobytes(),
            "patch_mask": b"" if patch_mask is None else np.asarray(patch_mask, bool).tobytes(),
            "grid": "" if grid is None else json.dumps([int(grid[0]), int(grid[1])]),
            "signals": b"" if not signals else _pack_signals(signals)}


def _pack_signals(signals: dict[str, np.ndarray]) -> bytes:
    names = sorted(signals)
    head = json.dumps(names).encode()
    return len(head).to_bytes(4, "little") + head + b"".join(np.asarray(signals[k], np.float32).tobytes() for k in names)


def _unpack_signals(raw: bytes, n: int) -> dict[str, np.ndarray]:
    size = int.from_bytes(raw[:4], "little")
    names = json.loads(raw[4 : 4 + size])
    body = np.frombuffer(raw[4 + size :], np.float32)
    return {k: body[i * n : (i + 1) * n].copy() for i, k in enumerate(names)}


class _Encode:
    """The encode stage's actor: loads one model, encodes batches of read pages."""

    def __init__(self, model: str, encoder_factory: Callable | None, load_kwargs: dict, want_signals: bool) -> None:
        if encoder_factory is not None:
            self.encoder = encoder_factory()
        else:
            from ..encoders import load_encoder

            self.encoder = load_encoder(model, **load_kwargs)
        import inspect

        self.kw: dict = {}
        if "signals" in inspect.signature(self.encoder.encode_pages).parameters:
            self.kw["signals"] = None if want_signals else [getattr(self.encoder, "importance", "cls")]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        n = len(batch["id"])
        ok = [i for i in range(n) if not batch["reason"][i]]
        contents = []
        for i in ok:
            raw = batch["content"][i]
            if int(batch["height"][i]):
                h, w = int(batch["height"][i]), int(batch["width"][i])
                contents.append(Image.fromarray(np.frombuffer(raw, np.uint8).reshape(h, w, 3)))
            else:
                contents.append(bytes(raw).decode("utf-8"))
        encoded = self.encoder.encode_pages(contents, batch_size=max(1, min(len(contents), 64)), **self.kw) if contents else []
        rows = [_page_row(np.zeros((0, 1), np.float32), None, None, None, None) for _ in range(n)]
        reasons = [str(r) for r in batch["reason"]]
        for i, enc in zip(ok, encoded):
            if enc.vectors.shape[0] == 0:
                reasons[i] = "the encoder produced no vectors"
            else:
                rows[i] = _page_row(enc.vectors, enc.importance, enc.patch_mask, enc.grid, None)
        out = {k: batch[k] for k in ("id", "bucket")}
        out["metadata"] = np.array([json.dumps({"source": str(p), "page": int(g), "kind": str(k), "sha256": str(s)})
                                    for p, g, k, s in zip(batch["path"], batch["page"], batch["kind"], batch["sha256"])],
                                   dtype=object)
        for key in ("n", "vectors", "importance", "patch_mask", "grid", "signals"):
            out[key] = np.array([r[key] for r in rows], dtype=np.int64 if key == "n" else object)
        out["reason"] = np.array(reasons, dtype=object)
        out["dim"] = np.full(n, int(getattr(self.encoder, "dim", 0) or 0), np.int64)
        return out


def _route(batch: dict[str, np.ndarray], writers: dict[int, str], namespace: str) -> dict[str, np.ndarray]:
    """Send each page of the batch to its bucket's writer actor; wait for the writes."""
    import ray

    by_bucket: dict[int, list[int]] = {}
    for i, b in enumerate(batch["bucket"]):
        by_bucket.setdefault(int(b), []).append(i)
    refs = []
    for b, rows in sorted(by_bucket.items()):
        actor = ray.get_actor(writers[b], namespace=namespace)
        part = {k: [batch[k][i] for i in rows] for k in batch}
        refs.append(actor.write.remote(part))
    taken = sum(r["written"] for r in ray.get(refs))
    return {"taken": np.array([taken], np.int64)}


class _ShardWriter:
    """The one writer of one bucket's shard during a build (a Ray actor)."""

    def __init__(self, root: str, bucket: int, settings: dict[str, Any], run_id: str, commit_every: int) -> None:
        from ..index import Index
        from ..index import manifest as M

        self.final = os.path.join(root, SM.shard_name(bucket))
        self.bucket = bucket
        self.settings = settings
        self.commit_every = commit_every
        self.tmp = None
        if M.is_collection(self.final):
            self.ix = Index.open(self.final, mode="a")
        else:
            self.tmp = os.path.join(root, f"{SM.TEMP_PREFIX}{SM.shard_name(bucket)}-{run_id}")
            if M.is_collection(self.tmp):  # this actor restarted: keep what its earlier life committed
                self.ix = Index.open(self.tmp, mode="a")
            else:
                st = settings
                self.ix = Index.create(self.tmp, st["dim"], st["codec"], encoder=st.get("encoder") or None,
                                       signals=st.get("signals", ()), merged=st.get("merged", False),
                                       rerank=st.get("rerank", True), summary_centroids=st.get("summary_centroids", 4))
        self.pruner = settings.get("pruner")
        self.written = 0
        self.skipped: dict[str, str] = {}
        self.buffer: list[tuple] = []  # pages taken but not yet committed
        self.buffered: set[str] = set()

    def write(self, part: dict[str, list]) -> dict[str, int]:
        """Take a batch of pages; commits whenever ``commit_every`` pages are buffered. Returns pages taken."""
        ix = self.ix
        taken = 0
        for i, page_id in enumerate(part["id"]):
            page_id = str(page_id)
            if part["reason"][i]:
                self.skipped[page_id] = str(part["reason"][i])
                continue
            if page_id in ix or page_id in self.buffered:  # a retried batch: already here
                continue
            n = int(part["n"][i])
            raw_imp, raw_mask = part["importance"][i], part["patch_mask"][i]
            self.buffer.append((
                page_id, np.frombuffer(part["vectors"][i], np.float32).reshape(n, -1),
                np.frombuffer(raw_imp, np.float32) if len(raw_imp) else None,
                np.frombuffer(raw_mask, bool) if len(raw_mask) else None,
                tuple(json.loads(part["grid"][i])) if part["grid"][i] else None,
                json.loads(part["metadata"][i]) if part.get("metadata") is not None else {},
                _unpack_signals(part["signals"][i], n) if len(part["signals"][i]) else None))
            self.buffered.add(page_id)
            taken += 1
        if len(self.buffer) >= self.commit_every:
            self._commit()
        return {"written": taken}

    def _commit(self) -> None:
        """Prune and commit the buffered pages (one ``Index.add``: one commit)."""
        if not self.buffer:
            return
        ix = self.ix
        ids, emb, imp, masks, grids, meta, sigs = (list(x) for x in zip(*self.buffer))
        dim = int(self.settings["dim"])
        if emb[0].shape[1] != dim:
            raise InvalidInputError(f"the encoder gives dimension {emb[0].shape[1]}; the collection holds {dim}")
        kw: dict[str, Any] = {"metadata": meta, "pruner": self.pruner}
        if any(m is not None for m in masks):
            kw["patch_mask"] = masks
        if any(g is not None for g in grids):
            kw["grids"] = grids
        if ix.signal_names:
            kw["signals"] = [{k: s[k] for k in ix.signal_names} for s in sigs]
        importance = imp if all(x is not None for x in imp) else None
        ix.add(ids, emb, importance, **kw)
        self.written += len(ids)
        self.buffer = []
        self.buffered = set()

    def ready(self) -> int:
        """Called once before routing starts: the actor exists (and is findable by name) once this returns."""
        return self.bucket

    def finish(self) -> dict[str, Any]:
        self._commit()
        if self.skipped:
            self.ix.record_skipped(self.skipped)
        self.ix.close()
        new = False
        if self.tmp is not None:
            os.rename(self.tmp, self.final)
            SM.fsync_dir(os.path.dirname(self.final))
            new = True
        return {"bucket": self.bucket, "written": self.written, "new": new, "skipped": dict(self.skipped)}


# -- driver -----------------------------------------------------------------------------------

def _resources(ray, workers: int, num_gpus: float | None) -> tuple[float, float]:
    """CPUs per encoder actor and per small task, so that reads and routes still fit a small local Ray."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    per_worker = 1.0 if num_gpus else min(1.0, max(0.1, (cpus - 0.5) / max(1, workers)))
    return per_worker, 0.1


def _open_target(output: str, n_shards: int | None, settings: dict[str, Any], overwrite: bool, default_shards: int):
    from .sharded import ShardedIndex

    if os.path.exists(output) and not overwrite:
        if not SM.is_sharded(output):
            raise InvalidInputError(f"{output} exists and is not a sharded colprune collection; pick another output")
        sh = ShardedIndex.open(output, mode="a")
        held = sh.settings
        problems = []
        for key in ("dim", "codec"):
            if settings.get(key) is not None and held.get(key) != settings[key]:
                problems.append(f"{key} {held.get(key)!r} (this build: {settings[key]!r})")
        if settings.get("encoder") and held.get("encoder") and held["encoder"] != settings["encoder"]:
            problems.append(f"encoder {held['encoder']!r} (this build: {settings['encoder']!r})")
        if settings.get("pruner") is not None and held.get("pruner") is not None and (
                {k: held["pruner"].get(k) for k in ("name", "params")} != settings["pruner"]):
            problems.append(f"pruner {held['pruner']} (this build: {settings['pruner']})")
        if n_shards is not None and n_shards != sh.n_shards:
            problems.append(f"{sh.n_shards} shards (this build asks for {n_shards}; the count is fixed at creation)")
        if problems:
            sh.close()
            raise InvalidInputError(f"{output} already holds a sharded collection with " + "; ".join(problems)
                                    + ". Add to it with its own settings, or write a new one (another output, or overwrite)")
        return sh
    return ShardedIndex.create(output, n_shards=n_shards or default_shards, overwrite=overwrite, **{
        "dim": settings["dim"], "dtype": settings["codec"], "encoder": settings.get("encoder"),
        "pruner": settings.get("pruner"), "signals": settings.get("signals", ()), "merged": settings.get("merged", False),
        "rerank": settings.get("rerank", True), "summary_centroids": settings.get("summary_centroids", 4)})


def _run_writers(ray, sh, rows_ds, buckets: set[int], commit_every: int, small_cpus: float) -> tuple[int, list[int], dict]:
    """Start one writer actor per bucket, route ``rows_ds`` to them, finish them, name new shards in the manifest."""
    run_id = uuid.uuid4().hex[:12]
    namespace = f"colprune-build-{run_id}"
    writer_cls = ray.remote(num_cpus=0, max_restarts=2, max_task_retries=2)(_ShardWriter)
    names = {b: f"writer-{b:05d}" for b in sorted(buckets)}
    actors = {b: writer_cls.options(name=names[b], namespace=namespace).remote(sh.path, b, sh.settings, run_id, commit_every)
              for b in sorted(buckets)}
    try:
        ray.get([a.ready.remote() for a in actors.values()])  # route tasks look writers up by name
        routed = rows_ds.map_batches(_route, fn_kwargs={"writers": names, "namespace": namespace}, batch_format="numpy",
                                     batch_size=64, num_cpus=small_cpus)
        for _ in routed.iter_batches(batch_size=None):
            pass
        results = ray.get([actors[b].finish.remote() for b in sorted(buckets)])
    finally:
        for a in actors.values():
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
    new = [r["bucket"] for r in results if r["new"]]
    if new:
        sh._add_shards(new)
    skipped: dict[str, str] = {}
    for r in results:
        skipped.update(r["skipped"])
    return sum(r["written"] for r in results), sorted(r["bucket"] for r in results if r["written"] or r["new"]), skipped


def _settings(dim: int, dtype: str, encoder: str | None, pruner, signals: Sequence[str], merged: bool | None,
              signal: str | None = None) -> dict:
    from ..pruning import make_pruner

    pr = None if pruner is None else make_pruner(pruner)
    cfg = None if pr is None else pr.config() | ({"signal": signal} if signal else {})
    return {"dim": int(dim), "codec": dtype, "encoder": encoder or "", "pruner": cfg,
            "signals": sorted(signals), "merged": bool(merged if merged is not None else (pr is not None and pr.merges)),
            "rerank": True, "summary_centroids": 4}


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
    dtype : vector codec of the shards
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
    from ..pipeline import DEFAULT_IMPORTANCE, _check_signal, _files, _model_dim
    from .ray_search import ensure_ray

    t0 = time.perf_counter()
    workers = int(workers)
    if workers < 1:
        raise InvalidInputError(f"workers must be at least 1, got {workers}")
    if n_shards is not None and (isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1):
        raise InvalidInputError(f"n_shards must be an integer >= 1, got {n_shards!r}")
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be at least 1, got {limit}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [os.fspath(inputs)]
    output = os.path.abspath(os.fspath(output))
    ray = ensure_ray(address)
    import ray.data as rd

    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    report = DistributedBuildReport(output=output, workers=workers)

    # 1. list (one CPU task per file)
    files = _files(list(inputs), id_root)
    listed: list[dict] = []
    if files:
        items = [{"order": i, "path": p, "root": r, "strict": strict} for i, (p, r) in enumerate(files)]
        listed = rd.from_items(items, override_num_blocks=min(len(items), 4 * workers)).flat_map(
            _list_file, num_cpus=0.1).take_all()
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

    # 2. the target collection, and what it already holds
    enc_name = getattr(encoder_factory, "name", None) or model
    dim = _model_dim(model) if encoder_factory is None else getattr(encoder_factory, "dim", None)
    if dim is None:
        probe = encoder_factory() if encoder_factory is not None else None
        if probe is None:
            from ..encoders import load_encoder

            probe = load_encoder(model)
        dim, enc_name = probe.dim, (probe.name or enc_name)
    new_target = overwrite or not os.path.exists(output)
    if importance is None and encoder_factory is None and new_target:
        importance = DEFAULT_IMPORTANCE
    settings = _settings(dim, dtype, enc_name, pruner, (), None, importance if new_target else None)
    sh = _open_target(output, n_shards, settings, overwrite, workers)
    try:
        held_signal = (sh.settings.get("pruner") or {}).get("signal")
        _check_signal(output, held_signal, importance)
        importance = held_signal or importance
        report.n_shards = sh.n_shards
        done: set[str] = set()
        recorded: dict[str, str] = {}
        for path in sh.shard_paths:
            from ..index import Index

            with Index.open(path) as ix:
                done.update(ix.ids)
                recorded.update(ix.skipped)
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
        if not todo:
            report.seconds = time.perf_counter() - t0
            return report
        for r in todo:
            r["bucket"] = SM.shard_of(r["id"], sh.n_shards)
        kind = getattr(encoder_factory, "input_kind", None) if encoder_factory is not None else (
            "text" if model == "minilm" or _is_text(model) else "image")
        if kind is None:
            kind = encoder_factory().input_kind

        # 3-5. read (tasks) -> encode (actor pool) -> route -> write (one actor per bucket)
        per_worker, small = _resources(ray, workers, num_gpus)
        cols = ("id", "bucket", "path", "page", "kind", "sha256")
        ds = rd.from_items([{k: r[k] for k in cols} for r in todo],
                           override_num_blocks=max(1, min(len(todo) // max(1, batch_size), 64)))
        ds = ds.map_batches(_read_batch, fn_kwargs={"kind": kind, "dpi": dpi}, batch_size=batch_size,
                            batch_format="numpy", num_cpus=small)
        load_kwargs: dict[str, Any] = {} if importance is None else {"importance": importance}
        if num_gpus:
            load_kwargs["device"] = "cuda"  # each actor sees the GPU(s) Ray assigned it as cuda:0...
        enc_opts: dict[str, Any] = {"num_cpus": per_worker}
        if num_gpus:
            enc_opts["num_gpus"] = num_gpus
        ds = ds.map_batches(_Encode, fn_constructor_kwargs={"model": model, "encoder_factory": encoder_factory,
                                                            "load_kwargs": load_kwargs, "want_signals": False},
                            batch_size=batch_size, batch_format="numpy", compute=rd.ActorPoolStrategy(size=workers),
                            **enc_opts)
        written, shards, skipped = _run_writers(ray, sh, ds, {r["bucket"] for r in todo}, commit_every, small)
        report.indexed = written
        report.shards_written = shards
        report.skipped.update(skipped)
    finally:
        sh.close()
    report.seconds = time.perf_counter() - t0
    return report


def _is_text(model: str) -> bool:
    try:
        from ..encoders import TEXT_MODEL_TYPES, model_type_of

        return model_type_of(model) in TEXT_MODEL_TYPES
    except Exception:  # noqa: BLE001
        return False


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
    from .ray_search import ensure_ray

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
    sh = _open_target(output, n_shards, _settings(dim, dtype, encoder, pruner, (), None), overwrite, int(workers))
    try:
        report.n_shards = sh.n_shards
        rows = []
        present = set(sh.ids)
        for i, page_id in enumerate(ids):
            if page_id in present:
                report.already_present += 1
                continue
            row = _page_row(embeddings[i], None if importance is None else importance[i], None, None, None)
            row.update(id=page_id, bucket=SM.shard_of(page_id, sh.n_shards), reason="",
                       metadata=json.dumps({} if metadata is None else metadata[i]))
            rows.append(row)
        if rows:
            ds = rd.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * int(workers))))
            written, shards, _ = _run_writers(ray, sh, ds, {r["bucket"] for r in rows}, commit_every, 0.1)
            report.indexed, report.shards_written = written, shards
    finally:
        sh.close()
    report.seconds = time.perf_counter() - t0
    return report
