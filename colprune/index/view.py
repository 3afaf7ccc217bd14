"""The read side of :class:`~colprune.index.Index`: opening, settings, pages, storage figures and search.

:class:`IndexView` holds the :class:`~colprune.index.snapshot.Snapshot` an open index shows
and answers every read from it; :class:`~colprune.index.Index` adds the writes. Use
``Index.open`` / ``Index.create``, not this class.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ClosedError, FormatError, InvalidInputError
from ..pruning import Pruner, make_pruner
from . import layout as L
from . import manifest as M
from . import search as S
from .candidates import check_candidates
from .codebook import read_codebook
from .codecs import empty_vectors
from .leftovers import find_leftovers
from .records import Hit, Page, check_queries, check_search, check_two_stage, default_rerank
from .snapshot import DEFAULT_MEMORY_BUDGET, Snapshot, load_collection, open_legacy
from .storage import codebook_info, file_holds
from .write import put_in_place, writing

__all__ = ["IndexView"]


class IndexView:
    """An open index as a reader sees it (see :class:`~colprune.index.Index`)."""

    def __init__(self, path: str, mode: str, *, version: int | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 _final_path: str | None = None, _replace: str | None = None) -> None:
        # Use Index.create / Index.open.
        self.path = _final_path or path
        self._root = path
        self.mode = mode
        self._memory_budget = int(memory_budget)
        self._replace = _replace
        self._lock: M.WriterLock | None = None
        self._held: Snapshot | None = None  # read through ``_snap``, which refuses a closed index
        self._torch: tuple[Any, Any, np.ndarray] | None = None
        self._closed = False
        if os.path.isfile(path):
            manifest, seg, self.format_version, self._legacy_attrs = open_legacy(path, mode)
            self._show(manifest, [seg], [None])
            return
        if mode == "a":
            if not M.is_collection(path):
                raise FormatError(f"{path} is a folder but not a colprune collection (no {L.MARKER} file)")
            with writing(path, "the writer lock"):
                for sub in (L.MANIFESTS, L.SEGMENTS, L.DELETES, L.TMP):  # git and some copies drop empty folders
                    os.makedirs(os.path.join(path, sub), exist_ok=True)
                self._lock = M.WriterLock(path)
            M.clear_tmp(path)
        try:
            self._load(version)
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _load(self, version: int | None) -> None:
        have = [] if self._held is None else self._held.segments
        book = None if self._held is None else self._held.codebook
        self.format_version, manifest, segments, deleted, codebook = load_collection(self._root, version, have, book)
        self._show(manifest, segments, deleted, codebook)

    def _show(self, manifest: dict[str, Any], segments: list, deleted: list, codebook=None) -> None:
        old = self._held
        if old is not None:
            for seg in old.segments:
                if seg not in segments:
                    seg.close()
        self._held = Snapshot(manifest, segments, deleted, previous=old, memory_budget=self._memory_budget,
                              codebook=codebook)

    @property
    def _snap(self) -> Snapshot:
        """The snapshot every read and write goes through; :class:`ClosedError` once the index is closed."""
        self.check_open()
        return self._held

    def check_open(self) -> None:
        """Raise :class:`~colprune.errors.ClosedError` when this index has been closed."""
        if self._closed:
            raise ClosedError.of(self.path)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, version: int | None = None,
             memory_budget: int = DEFAULT_MEMORY_BUDGET):
        """Open a collection (or a version 1/2 file, read-only).

        ``mode="r"`` reads the newest committed version (or ``version=``), a snapshot that
        later commits do not change (:meth:`refresh` moves to the newest); ``"a"`` also
        writes, holding the writer lock.
        """
        if mode not in ("r", "a"):
            raise InvalidInputError(f"mode must be 'r' or 'a', got {mode!r}")
        path = os.path.abspath(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"no index at {path}")
        if version is not None and mode == "a":
            raise InvalidInputError("version= opens an older snapshot read-only; use mode='r'")
        return cls(path, mode, version=version, memory_budget=memory_budget)

    def refresh(self) -> None:
        """Move a reader to the newest committed version."""
        self.check_open()
        if self.format_version in L.FILE_VERSIONS:
            return
        self._load(None)

    def snapshot(self) -> Snapshot:
        """The committed version this index shows: what search reads (see :class:`~colprune.index.snapshot.Snapshot`).

        It stays readable until this index commits, refreshes or closes.
        """
        return self._snap

    @property
    def memory_budget(self) -> int:
        """Bytes of vectors exact search holds at a time."""
        return self._memory_budget

    @memory_budget.setter
    def memory_budget(self, value: int) -> None:
        self._memory_budget = int(value)
        if self._held is not None:
            self._held.memory_budget = self._memory_budget

    def close(self) -> None:
        """Close the index; a collection created with ``overwrite`` replaces the old one now."""
        if self._closed:
            return
        self._closed = True
        for seg in self._held.segments if self._held is not None else ():
            seg.close()
        if self._held is not None:
            self._held.segments = []
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._replace is not None:
            final, self._replace = self._replace, None
            put_in_place(self._root, final)
            self._root = final

    def abandon(self) -> None:
        """Close a collection being written by ``create(overwrite=True)`` *without* putting it in place:
        the partial copy is removed and the collection it was to replace stays as it was. For any
        other index this is :meth:`close`."""
        final, self._replace = self._replace, None
        root = self._root
        self.close()
        if final is not None:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if not self._closed and self._replace is None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        if self._closed:
            return f"Index({self.path!r}, mode={self.mode!r}, closed)"
        return (f"Index({self.path!r}, mode={self.mode!r}, docs={len(self)}, vectors={self.n_vectors}, "
                f"dim={self.dim}, codec={self.codec}, pruner={self.pruner!r})")

    # -- header ----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._snap.dim

    @property
    def codec(self) -> str:
        """The vector codec (``float16``, ``float32``, ``int8``, ``binary``, ``residual1``/``2``/``4``)."""
        return self._snap.codec

    @property
    def codebook(self):
        """The residual codecs' :class:`~colprune.index.codebook.Codebook` (None for other codecs, or before the
        first write trained it)."""
        return self._snap.codebook

    dtype = codec

    @property
    def has_rerank(self) -> bool:
        return self._snap.has_rerank

    @property
    def signal_names(self) -> list[str]:
        return self._snap.signal_names

    @property
    def merged(self) -> bool:
        return self._snap.merged

    @property
    def version(self) -> int:
        """The committed version this index shows (0 for version 1/2 files)."""
        return self._snap.version

    @property
    def pruner_config(self) -> dict[str, Any] | None:
        """The stored ``{"name", "params"}`` record of the pruner (with ``derived_from`` if any)."""
        return self._snap.manifest.get("pruner")

    @property
    def pruner(self) -> Pruner | None:
        cfg = self.pruner_config
        return None if cfg is None else make_pruner(cfg)

    @property
    def encoder(self) -> str | None:
        """Name or path of the encoder recorded at build time: shown to users, never loaded by colprune on its own."""
        return self._snap.manifest.get("encoder") or None

    @property
    def attrs(self) -> dict[str, Any]:
        self.check_open()
        if self.format_version in L.FILE_VERSIONS:
            return dict(self._legacy_attrs)
        m = self._snap.manifest
        return {"format": L.COLLECTION_FORMAT, "format_version": self.format_version, "dim": m["dim"], "codec": m["codec"],
                "dtype": np.dtype(L.CODECS[m["codec"]]).name, "pruner": json.dumps(m["pruner"]) if m["pruner"] else "",
                "encoder": m["encoder"], "library_version": m["library_version"], "created": m["created"],
                "version": m["version"]}

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector (residual codecs: code + residual; the codebook's bytes not counted)."""
        return L.stored_bytes(self.codec, self.dim)

    @property
    def skipped(self) -> dict[str, str]:
        """Sources a build could not embed, with the reason (recorded by :meth:`record_skipped`)."""
        return dict(self._snap.manifest.get("skipped", {}))

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snap)

    @property
    def n_vectors(self) -> int:
        """Stored vectors over all live pages."""
        return self._snap.n_vectors

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._snap

    @property
    def ids(self) -> list[str]:
        """Live page ids, in commit order (an upserted page moves to the end)."""
        return self._snap.ids

    def get(self, doc_id: str) -> Page:
        """The stored page with id ``doc_id`` (KeyError if absent)."""
        rows = self._snap.id_rows()
        if doc_id not in rows:
            raise KeyError(f"no document {doc_id!r} in {self.path}")
        si, r = rows[doc_id]
        return self._snap.pages(si, r, r + 1)[0]

    def __iter__(self) -> Iterator[Page]:
        return self.iter_pages()

    def iter_pages(self, batch_size: int = 1024) -> Iterator[Page]:
        """Every live page in commit order, read ``batch_size`` documents at a time."""
        return self._snap.iter_pages(batch_size)

    def warm(self, memory_budget: int | None = None, *, kernels: bool = False) -> int:
        """Hold whole segments' vectors in memory, in order, while they fit ``memory_budget``.

        Exact and two-stage search then read those segments from memory (the rest streams from
        disk). Search warms automatically within the index's budget; returns the bytes held.
        ``kernels=True`` also runs the search kernels once on one page (Numba loads them on first
        use, ~1 s in a fresh process), so the first query runs as fast as the next: a server calls
        ``warm(kernels=True)`` once after opening (``colprune serve`` does).
        """
        budget = self.memory_budget if memory_budget is None else int(memory_budget)
        segments = self._snap.segments
        held = sum(seg.make_resident() for seg in segments if seg.resident is not None)
        for seg in segments:
            if seg.resident is None and held + seg.vector_bytes() <= budget:
                held += seg.make_resident()
        if kernels:  # after residency: the kernels then read what searches will read
            S.warm_kernels(self._snap)
        return held

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live page's stored vectors in memory, as the kernels take them, and their offsets.

        Unbounded memory: for inspection and small indexes (search streams instead).
        ``(N, dim)`` float16/float32, int8 codes for ``int8``, ``(N, words)`` uint64 for ``binary``,
        ``(N, dim * nbits / 8)`` uint8 packed residuals for the residual codecs (their centroid codes:
        ``snapshot().segments[i].read_vectors(lo, hi)["codes"]``; decoded pages: :meth:`iter_pages`).
        """
        snap = self._snap
        if len(snap):
            data, off = S.gather_docs(snap, snap.positions())
        else:
            data, off = {L.VECTORS: empty_vectors(snap.manifest)}, np.zeros(1, np.int64)
        vec = data[L.VECTORS]
        if self.codec == "binary":
            vec = np.ascontiguousarray(vec).view("<u8")
        return vec, off

    def info(self) -> dict[str, Any]:
        """Counts and storage figures: pages, vectors, keep ratio, vector and file bytes per page, what the files hold."""
        snap = self._snap
        n_docs, n_vec = len(snap), snap.n_vectors
        n_orig = 0
        for seg, dele in zip(snap.segments, snap.deleted):
            t = seg.doc_table(L.DOC_N_ORIGINAL)
            n_orig += int(t.sum() if dele is None else t[~dele].sum())
        legacy = self.format_version in L.FILE_VERSIONS
        file_bytes, holds = file_holds(snap, None if legacy else self._root)
        per = (lambda x: x / n_docs) if n_docs else (lambda x: None)  # noqa: E731
        return {
            "path": self.path, "format": L.FORMAT_NAME if legacy else L.COLLECTION_FORMAT,
            "format_version": self.format_version, "version": self.version,
            "library_version": snap.manifest.get("library_version"), "docs": n_docs,
            "deleted_docs": sum(0 if d is None else int(d.sum()) for d in snap.deleted), "segments": len(snap.segments),
            "vectors": n_vec, "original_vectors": n_orig, "keep_ratio": (n_vec / n_orig) if n_orig else None,
            "dim": self.dim, "dtype": self.codec, "codec": self.codec, "rerank_vectors": self.has_rerank,
            "vector_bytes_per_page": per(n_vec * self.bytes_per_vector),
            "unpruned_vector_bytes_per_page": per(n_orig * self.bytes_per_vector),
            "unpruned_float16_bytes_per_page": per(n_orig * self.dim * 2),
            "file_bytes": file_bytes, "file_bytes_per_page": per(file_bytes), "stored_bytes_per_page": per(file_bytes),
            "holds": holds, "skipped": len(snap.manifest.get("skipped", {})),
            "pruner": self.pruner_config, "encoder": self.encoder,
            "bytes_per_vector": self.bytes_per_vector, "codebook": codebook_info(snap, None if legacy else self._root, n_docs),
        }

    def verify(self) -> dict[str, Any]:
        """Check every byte of the collection against its checksums, and the rules checksums cannot vouch for
        (ids unique over live pages and as the writer makes them, metadata JSON objects, filter columns equal
        to the metadata, summaries as computed; residual codecs: the codebook, codes within it, inverted lists
        as the codes give them); raises :class:`CorruptionError`.

        Returns ``{"segments", "docs", "bytes"}`` checked, and ``"leftovers"``: folders killed overwrites
        left beside it (``colprune gc`` removes them).
        """
        total = 0
        snap = self._snap
        entry = snap.manifest.get("codebook")
        if entry:  # read again from disk: every byte against its checksum, and its structure
            read_codebook(self._root, entry, self.dim, self.codec)
            total += os.path.getsize(os.path.join(self._root, L.CODEBOOKS, entry["name"]))
        for seg in snap.segments:
            seg.verify()
            total += seg.file_size
        snap.check_unique_ids()
        return {"segments": len(snap.segments), "docs": len(self), "bytes": total, "leftovers": find_leftovers(self.path)}

    # -- search ----------------------------------------------------------------------------

    def filter_fields(self) -> set[str]:
        """Metadata fields ``search(where=...)`` and ``delete(where=...)`` can filter on."""
        return self._snap.filter_fields()

    def scores(self, queries, *, n_threads: int | None = None) -> np.ndarray:
        """Exact MaxSim of every query against every live page: ``(n_queries, n_live)`` float32 (loads all vectors)."""
        qv, qoff, _ = check_queries(queries, self.dim)
        return S.score_all(self._snap, qv, qoff, n_threads)

    def search(
        self,
        queries,
        k: int = 10,
        *,
        n_threads: int | None = None,
        rerank: int | None = None,
        candidates: int | None = None,
        nprobe: int | None = None,
        n_centroids: int | None = None,
        where: dict[str, Any] | None = None,
        memory_budget: int | None = None,
        device: str | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Top-``k`` pages by MaxSim, exact unless ``candidates`` asks for two-stage search.

        Parameters
        ----------
        queries : (n_tokens, dim) array, or a list of such arrays (NumPy or torch)
        k : int >= 1
            Hits per query (fewer if fewer pages match).
        n_threads : threads for the kernels (default: all cores).
        rerank : int >= 1, optional
            ``binary`` with a rerank copy: shortlist this many pages per query by Hamming MaxSim,
            then rescore them exactly from float16 (default ``max(100, 10 k)``; 0 returns the
            Hamming ranking).
        candidates : int >= 1, optional
            Two-stage search (float codecs): rank every page by its persisted int8 centroid
            summary, then score the best ``candidates`` per query exactly, reading only their
            vectors from disk. Residual codecs (``candidates >= k``): search through the centroid
            index, each query token probing its ``nprobe`` nearest centroids' inverted lists, the
            pages found ranked by centroid-level MaxSim, the best ``candidates`` per segment scored
            exactly on their decoded residuals. Recall below 1 is possible.
        nprobe : int >= 1, optional
            Residual codecs with ``candidates``: centroids each query token probes (default 4).
        n_centroids : ignored unless it differs from the stored summary's (then an error says so).
        where : dict, optional
            Metadata filter applied before scoring: ``{"field": value}`` (equality),
            ``{"field": {"in": [...]}}``, ``{"field": {"gte": x, "lt": y}}``, ``ne``, ``gt``,
            ``lte``; conditions on several fields are ANDed. Non-matching pages are never
            scored, and the top-``k`` is exact among the matching ones.
        memory_budget : bytes of vectors held at a time by exact search (default: the index's).
        device : ``"cuda"``, ``"cpu"``, ``"mps"``... : exact search with torch on that device
            (:class:`~colprune.kernels.torch_maxsim.TorchScorer`). The live vectors are uploaded
            once (int8 dequantised; binary from its float16 rerank copy) and stay resident until
            the index changes; float16 compute with float32 accumulation on CUDA. Not combined
            with ``candidates``.

        Returns
        -------
        list of :class:`Hit` for one 2-D query; a list of such lists for a list of queries.
        Each hit is ``(id, score)`` with ``.metadata``, best first; ties go to the earlier page.
        """
        k, rerank, candidates = check_search(k, rerank, candidates)
        qv, qoff, single = check_queries(queries, self.dim)
        snap = self._snap
        probe = check_candidates(snap.codec, k, candidates, nprobe, snap.codebook.n_centroids if snap.codebook else 1)
        masks, n_q, budget = snap.masks(where), qoff.size - 1, memory_budget or self.memory_budget
        if len(snap) == 0:
            idx, val = [np.zeros(0, np.int64)] * n_q, [np.zeros(0, np.float32)] * n_q
        elif device is not None:
            if candidates is not None:
                raise InvalidInputError("device= scores every page exactly; it does not combine with candidates=")
            idx, val = self._device_search(qv, qoff, k, masks, device)
        elif probe is not None:
            self.warm(budget // 2)
            idx, val = S.centroid_search(snap, qv, qoff, k, candidates, probe, masks, n_threads, budget // 2)
        elif candidates is not None:
            check_two_stage(self.codec, snap.summary_centroids, n_centroids)
            self.warm(budget // 2)
            idx, val = S.two_stage_search(snap, qv, qoff, k, candidates, masks, n_threads, n_centroids)
        else:
            self.warm(budget // 2)  # what fits half the budget stays resident; blocks of the rest stream
            rerank = default_rerank(k) if rerank is None else rerank
            idx, val = S.exact_search(snap, qv, qoff, k, masks, n_threads, budget // 2, rerank)
        for v in val:
            if v.size and not np.isfinite(v).all():
                raise InvalidInputError("query values too large: scores overflow float32 (scale the query vectors down)")
        hits = [[snap.hit(int(p), float(s)) for p, s in zip(pi, pv)] for pi, pv in zip(idx, val)]
        return hits[0] if single else hits

    def _device_search(self, qv, qoff, k: int, masks, device: str):
        key = (str(device), self.version)
        if self._torch is None or self._torch[0] != key:
            scorer, positions = S.device_scorer(self._snap, device)
            self._torch = (key, scorer, positions)
        _, scorer, positions = self._torch
        return S.device_search(self._snap, scorer, positions, qv, qoff, k, masks)

    def summary(self, n_centroids: int | None = None, *, n_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Live pages' first-stage centroids, dequantised: ``(centroids (C, dim) float32, offsets (n_live + 1,))``."""
        return self._snap.live_summary(n_centroids)
