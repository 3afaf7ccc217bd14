"""The multi-vector index (format version 4): a collection directory of immutable segments.

``Index`` is the public API: create/open, add, upsert, delete, compact, search (exact, streaming
with bounded memory; two-stage over persisted summaries; the centroid index of residual codecs;
metadata filters), derive, verify. Each change is one commit: new segment, deletion and codebook
files are written and made durable first, then one manifest naming the live state is renamed
into place. Readers open one manifest (a consistent snapshot) and are never blocked by the
writer; one writer at a time holds the collection's lock. Format 3 collections open read-write
(they stay format 3); version 1 and 2 files open read-only. See ``docs/format.md``.

``Index`` is a façade over :mod:`~colprune.index.view` (reads, search), :mod:`~colprune.index.prepare`,
:mod:`~colprune.index.codecs`, :mod:`~colprune.index.write`, :mod:`~colprune.index.compact`,
:mod:`~colprune.index.training` (codebooks) and :mod:`~colprune.index.derive`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import ColpruneWarning, InvalidInputError, WriteError
from ..pruning import NoPruning, PrunedPage, Pruner, make_pruner
from . import compact as C
from . import derive as D
from . import layout as L
from . import manifest as M
from . import training as T
from . import write as W
from .layout import stored_bytes as codec_bytes
from .leftovers import warn_leftovers
from .prepare import Prepared, check_packed, packed_blocks, prepare_pages, resolve_pruner
from .records import MAX_ID_BYTES, Hit, Page, check_count, check_delete, check_ids, unknown_ids
from .segment import Block
from .snapshot import DEFAULT_MEMORY_BUDGET
from .view import IndexView

__all__ = ["Hit", "Index", "Page", "codec_bytes", "MAX_ID_BYTES", "DEFAULT_MEMORY_BUDGET", "MergeSkippedWarning"]


class MergeSkippedWarning(ColpruneWarning):
    """The merge of small segments after a commit could not be written (disk full...): the commit stands,
    the next commit (or ``compact``) merges them."""


class Index(IndexView):
    """A multi-vector index: a collection directory of immutable segments (format version 4).

    Use :meth:`create` or :meth:`open`, preferably as a context manager. Every change
    (:meth:`add`, :meth:`upsert`, :meth:`delete`, :meth:`compact`) is crash-safe: it is
    visible exactly when its manifest is committed, and a process killed before that leaves
    the previous state. Readers see one committed snapshot and are never blocked by a writer;
    one writer at a time (a second one gets :class:`~colprune.errors.LockedError`).

    A write that fails (disk full, quota, I/O error) raises :class:`~colprune.errors.WriteError`
    and leaves the collection at its last commit; the index stays usable.

    Examples
    --------
    >>> with Index.create("pages.cpx", dim=128) as index:           # doctest: +SKIP
    ...     index.add(ids, embeddings, importance=imp, pruner=AdaptiveThreshold(-0.25))
    >>> Index.open("pages.cpx").search(query, k=10)                 # doctest: +SKIP
    """

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", **kwargs: Any) -> Index:
        """Open a collection (or a version 1/2 file, read-only), as :meth:`IndexView.open` says.

        Folders left beside it by killed overwrites are reported once per process (a
        :class:`~colprune.index.leftovers.LeftoverWarning`; ``colprune gc`` removes them).
        """
        index = super().open(path, mode, **kwargs)
        warn_leftovers(index.path)
        return index

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        dim: int,
        dtype: str = "float16",
        *,
        encoder: str | None = None,
        overwrite: bool = False,
        rerank: bool = True,
        signals: Sequence[str] = (),
        merged: bool = False,
        summary_centroids: int = 4,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        pruner: Pruner | str | dict[str, Any] | None = None,
        signal: str | dict[str, float] | None = None,
        _aside: bool = False,
    ) -> Index:
        """Create an empty collection (a directory), open for writing.

        Parameters
        ----------
        path : the collection directory to create; refused if it exists unless ``overwrite``.
            With ``overwrite``, the new collection is built beside the old one and renamed into
            place when it is closed: the old one stays intact (and readable) until then, and an
            index another process is writing is never replaced (``LockedError``; when that
            happens at close, the complete new collection is kept as ``PATH.new-<time>`` and the
            error says so). Folders killed overwrites left beside ``path`` are removed.
        dim : embedding dimension (128 for ColPali/ColQwen2).
        dtype : the vector codec: ``"float16"`` (default), ``"float32"``, ``"int8"`` (per-vector
            scale), ``"binary"`` (sign bits), or ``"residual1"``/``"residual2"``/``"residual4"``: a centroid
            id and a 1/2/4-bit residual per dimension (``dim * nbits`` a multiple of 8), with a codebook
            trained on the first write (a sample of at most 524,288 of its vectors) and inverted lists
            for ``search(candidates=...)``.
        rerank : for ``"binary"``: also keep float16 vectors to rerank the Hamming shortlist
            exactly (costs the float16 bytes on disk; ``False`` drops them).
        signals : names of extra per-vector importance signals to store.
        merged : the index will hold merged vectors (mergers such as ``ward``).
        summary_centroids : centroids per page in the persisted first-stage summary of
            two-stage search (float codecs; 0 = none).
        encoder : name or path of the model that made the embeddings (shown, never loaded
            without the user's say).
        memory_budget : bytes of vectors exact search holds at a time.
        pruner : Pruner, registry name or ``{"name", "params", ...}`` record, optional
            Recorded as the pruner of the pages from the first commit on (a record is kept as
            given, ``derived_from`` included). Default: the first pages' pruner.
        signal : str or dict, optional
            The importance signal (or blend) the pruner reads, recorded with ``pruner``.
        """
        path = os.path.abspath(os.fspath(path))
        if dtype not in L.CODECS:
            raise InvalidInputError(f"dtype must be one of {sorted(L.CODECS)}, got {dtype!r}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) < 1:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        if int(dim) > L.MAX_DIM:  # readers refuse larger dims as hostile
            raise InvalidInputError(f"dim must be at most {L.MAX_DIM}, got {dim}")
        L.check_codec(dtype, dim)
        for name in signals:
            if not isinstance(name, str) or not name or "/" in name:
                raise InvalidInputError(f"bad signal name {name!r}")
        if signal is not None and pruner is None:
            raise InvalidInputError("signal= records what a pruner reads: pass pruner= too")
        body = M.new_manifest(int(dim), dtype, encoder=encoder, rerank=rerank, signals=signals, merged=merged,
                              summary_centroids=summary_centroids if dtype in ("float16", "float32") else 0)
        body["pruner"] = W.pruner_record(pruner, signal)
        tmp = W.make_collection(path, body, overwrite=overwrite, aside=_aside)
        if tmp is None:
            return cls(path, "a", memory_budget=memory_budget)
        return cls(tmp, "a", memory_budget=memory_budget, _final_path=path, _replace=path)

    # -- writing ---------------------------------------------------------------------------

    def _check_writable(self) -> None:
        self.check_open()
        if self.mode != "a":
            raise PermissionError(f"{self.path} is open read-only; use Index.open(path, mode='a') to write")

    def add(
        self,
        ids: Sequence[str],
        embeddings: Sequence,
        importance: Sequence | None = None,
        *,
        pruner: Pruner | str | None = None,
        metadata: Sequence[dict | None] | None = None,
        patch_mask: Sequence | None = None,
        grids: Sequence[tuple[int, int] | None] | None = None,
        signals: Sequence[dict] | None = None,
        commit_every: int | None = None,
        signal: str | None = None,
    ) -> list[PrunedPage]:
        """Prune and append pages.

        Every page is validated and pruned before anything is written, so bad input raises
        :class:`~colprune.errors.InvalidInputError` (naming the document) and leaves the index
        unchanged. The pages are then committed, ``commit_every`` at a time (default: all in
        one commit); a crash keeps every commit made before it.

        Parameters
        ----------
        ids : n unique page ids (non-empty, UTF-8, at most 1,024 bytes, no NUL or line breaks),
            not already in the index
        embeddings : n floating-point arrays of shape (n_i, dim), NumPy or torch
        importance : n arrays of shape (n_i,), optional (stored with the kept vectors)
        pruner : Pruner or registry name, optional
            Defaults to the index's pruner, else :class:`NoPruning`; an index holds one
            pruner configuration.
        metadata : n JSON-able dicts (or None); scalar top-level fields are filterable
        patch_mask : n boolean arrays (n_i,), optional: True for image-patch rows
        grids : n ``(rows, cols)`` patch grids (or None), optional
        signals : n dicts of name -> (n_i,) scores; required when the index stores signals
        signal : name of the importance signal behind ``importance``, optional: recorded with
            the pruner, in the same commit as the pages, when the record has none

        Returns
        -------
        list of PrunedPage, what was stored for each page.
        """
        self._check_writable()
        prepared = prepare_pages(self._snap, self.path, ids, embeddings, importance, pruner, metadata, patch_mask, grids,
                                 signals, replacing=False)
        step = len(prepared.ids) if commit_every is None else check_count(commit_every, "commit_every")
        self._write(prepared, step, replace=False, signal=signal)
        return prepared.pages

    def upsert(self, ids: Sequence[str], embeddings: Sequence, importance: Sequence | None = None, **kwargs) -> list[PrunedPage]:
        """Add pages, replacing those whose id is already present, in one atomic commit.

        Takes :meth:`add`'s arguments. A reader sees the old version of every page of the call
        or the new one, never both or neither; a replaced page moves to the end of the order.
        """
        self._check_writable()
        kwargs.pop("commit_every", None)
        signal = kwargs.pop("signal", None)
        prepared = prepare_pages(self._snap, self.path, ids, embeddings, importance, kwargs.pop("pruner", None),
                                 kwargs.pop("metadata", None), kwargs.pop("patch_mask", None), kwargs.pop("grids", None),
                                 kwargs.pop("signals", None), replacing=True)
        if kwargs:
            raise TypeError(f"upsert() got unexpected arguments {sorted(kwargs)}")
        self._write(prepared, max(1, len(prepared.ids)), replace=True, signal=signal)
        return prepared.pages

    def add_packed(
        self,
        ids: Sequence[str],
        vectors,
        lengths,
        importance=None,
        *,
        metadata: Sequence[dict | None] | None = None,
        pruner: Pruner | str | None = None,
        commit_every: int | None = None,
        signal: str | None = None,
    ) -> None:
        """Append pages given packed, every page's vectors back to back: the bulk-load path.

        Takes what an encoder or another store hands over in CSR form, with no list of
        per-page arrays. For an unpruned index (:class:`NoPruning`) validation is vectorised
        over the whole batch; with any other pruner the pages are pruned one by one, as
        :meth:`add` does. Errors and atomicity are :meth:`add`'s: bad input names the document
        and leaves the index unchanged.

        Parameters
        ----------
        ids : n unique page ids, not already in the index
        vectors : (N, dim) floating-point array, page ``i`` in rows ``offsets[i]:offsets[i + 1]``
            where ``offsets = [0, *cumsum(lengths)]``
        lengths : (n,) integers >= 1, summing to N
        importance : (N,) float array, optional
        metadata : n JSON-able dicts (or None), optional
        pruner : Pruner or registry name, optional (as in :meth:`add`)
        commit_every : pages per commit (default: all in one commit)
        signal : as in :meth:`add`
        """
        self._check_writable()
        ids = check_ids(ids)
        vectors, lengths, off, importance = check_packed(ids, vectors, lengths, importance, metadata, self.dim)
        resolved = resolve_pruner(self._snap, pruner, self.path)
        if resolved.name != NoPruning.name or self.signal_names or self.merged:
            self.add(ids, [vectors[off[i] : off[i + 1]] for i in range(len(ids))],
                     None if importance is None else [importance[off[i] : off[i + 1]] for i in range(len(ids))],
                     pruner=resolved, metadata=metadata, commit_every=commit_every, signal=signal)
            return
        with W.undo_on_error(self._root):  # a codebook trained for pages then refused is removed
            cb = self._codebook(lambda: T.flat_sample(vectors)) if len(ids) else None
            blocks = packed_blocks(self._snap, self.path, ids, vectors, lengths, off, importance, metadata, commit_every, cb)
        self._commit_blocks(blocks, resolved.config(), replace=False, signal=signal, codebook=cb)

    def _codebook(self, sample):
        """The codebook to encode with (residual codecs; None for others): the collection's, or one trained now on
        ``sample()`` and written (the next commit names it)."""
        if not L.residual_bits(self.codec):
            return None
        if self._snap.codebook is not None:
            return self._snap.codebook
        return T.new_codebook(self._root, sample(), self.codec)

    def train_codebook(self, vectors) -> None:
        """Train the codebook of an empty residual collection on ``vectors`` (N, dim), a sample of what it will hold
        (at most 524,288 rows used), or copy a Codebook given, and commit it: later writes all encode with it."""
        self._check_writable()
        if not L.residual_bits(self.codec) or len(self):
            raise InvalidInputError(f"train_codebook trains an empty residual collection; {self.path} is {self.codec} "
                                    f"with {len(self)} pages (retrain a filled one: compact(retrain=True))")
        with W.undo_on_error(self._root):
            cb = self._codebook(lambda: T.flat_sample(vectors, self.dim))
            self._commit({**W.next_body(self._snap.manifest), "codebook": {"name": cb.name, "checksum": cb.checksum}})

    def _write(self, prepared: Prepared, step: int, *, replace: bool, signal: str | None = None) -> None:
        if prepared.ids:
            cb = self._codebook(lambda: T.prepared_sample(prepared))
            self._commit_blocks(W.prepared_blocks(self._snap.manifest, prepared, step, cb), prepared.config,
                                replace=replace, signal=signal, codebook=cb)

    def _commit_blocks(self, blocks: Iterable[Block], config: dict[str, Any], *, replace: bool, signal: str | None,
                       codebook=None) -> None:
        """Write and commit each block as a new segment (replacing live pages of the same ids when ``replace``), then merge.

        ``codebook``: the residual codecs' (the first commit names it when it was trained for these blocks)."""
        for block in blocks:
            with W.undo_on_error(self._root):
                body = W.next_body(self._snap.manifest)
                if codebook is not None:
                    body["codebook"] = {"name": codebook.name, "checksum": codebook.checksum}
                entry = W.write_segment(self._root, body, [block], block.n_vectors,
                                        0 if codebook is None else codebook.n_centroids)
                W.record_pruner(body, config, signal, empty=not len(self))
                if replace:
                    rows = self._snap.id_rows()
                    W.delete_rows(self._root, self._snap, body, [rows[i] for i in block.ids if i in rows])
                body["segments"].append(entry)
                self._commit(body)
            drift = None if self.__dict__.get("_drifted") else T.drift_message(self.path, entry, self._snap.codebook)
            if drift is not None:  # once per open index
                self._drifted = True
                warnings.warn(T.CodebookDriftWarning(drift), stacklevel=4)
        self._merge_small()

    def _merge_small(self) -> None:
        """The tiered merge after a commit; a merge that cannot be written is left for later (the commit stands)."""
        try:
            while (run := C.merge_run(self._snap)) is not None:
                with W.undo_on_error(self._root):
                    self._commit(C.rewrite(self._root, self._snap, [run], self.memory_budget, W.next_body(self._snap.manifest)))
        except WriteError as e:
            warnings.warn(MergeSkippedWarning(f"{self.path}: the pages are committed, but merging small segments "
                                              f"was not: {e}"), stacklevel=5)

    def _commit(self, body: dict[str, Any]) -> None:
        """Write the manifest (the commit), then move this index to the new state."""
        W.commit_manifest(self._root, body)
        self._load(None)
        M.collect_garbage(self._root, body["version"])

    def delete(self, ids: Sequence[str] | str | None = None, *, where: dict[str, Any] | None = None,
               missing: str = "error") -> int:
        """Delete pages by id and/or by metadata filter, in one commit; returns how many were deleted.

        ``missing="error"`` (default) refuses unknown ids before anything is written;
        ``"ignore"`` skips them. A deleted page is never returned again; its bytes are freed by
        :meth:`compact`.
        """
        self._check_writable()
        ids = check_delete(ids, where, missing)
        snap = self._snap
        rows_of = snap.id_rows()
        targets: set[tuple[int, int]] = set()
        if ids is not None:
            unknown = [i for i in ids if i not in rows_of]
            if unknown and missing == "error":
                raise unknown_ids(self.path, unknown)
            targets |= {rows_of[i] for i in ids if i in rows_of}
        if where is not None:
            for si, m in enumerate(snap.masks(where)):
                targets |= {(si, int(r)) for r in np.flatnonzero(m)}
        if not targets:
            return 0
        body = W.next_body(snap.manifest)
        with W.undo_on_error(self._root):
            W.delete_rows(self._root, snap, body, sorted(targets))
            self._commit(body)
        return len(targets)

    def record_skipped(self, reasons: dict[str, str]) -> None:
        """Record sources a build could not embed (id or path -> reason), in one commit."""
        self._check_writable()
        if reasons:
            body = W.next_body(self._snap.manifest)
            body.setdefault("skipped", {}).update({str(k): str(v) for k, v in reasons.items()})
            self._commit(body)

    def clear_skipped(self, ids: Sequence[str] | None = None) -> None:
        """Forget skipped records (all, or those of ``ids``), e.g. before retrying them."""
        self._check_writable()
        body = W.next_body(self._snap.manifest)
        sk = body.setdefault("skipped", {})
        for k in list(sk) if ids is None else ids:
            sk.pop(k, None)
        self._commit(body)

    # -- maintenance -----------------------------------------------------------------------

    def compact(self, *, memory_budget: int | None = None, retrain: bool = False) -> dict[str, Any]:
        """Rewrite segments with deleted pages, and merge small ones; one commit.

        ``retrain`` (residual codecs): train a new codebook on a sample of the live vectors (decoded) and
        re-encode every segment with it, in the same one commit (the old codebook file is then collected).
        Returns ``{"bytes_before", "bytes_after", "segments_before", "segments_after"}``. A
        crash at any moment leaves the old state or the new one; readers that opened before
        keep reading their snapshot.
        """
        self._check_writable()
        before = self.info()["file_bytes"]
        n_before = len(self._snap.segments)
        plan = C.compaction_plan(self._snap)
        budget = memory_budget or self.memory_budget
        if retrain:
            with W.undo_on_error(self._root):
                self._commit(T.retrain(self._root, self._snap, budget, W.next_body(self._snap.manifest)))
            self._drifted = False
        elif plan:
            body = W.next_body(self._snap.manifest)
            with W.undo_on_error(self._root):
                self._commit(C.rewrite(self._root, self._snap, plan, budget, body))
        after = self.info()["file_bytes"]
        return {"bytes_before": before, "bytes_after": after, "segments_before": n_before,
                "segments_after": len(self._snap.segments)}

    def summarize(self, n_centroids: int = 4) -> None:
        """(Re)compute the persisted first-stage summaries with ``n_centroids`` per page (rewrites segments)."""
        self._check_writable()
        if self.codec not in ("float16", "float32"):
            raise InvalidInputError(f"first-stage summaries need a float16/float32 index, not {self.codec}")
        n_centroids = check_count(n_centroids, "n_centroids")
        body = W.next_body(self._snap.manifest)
        body["summary_centroids"] = n_centroids
        todo = [[si] for si, s in enumerate(self._snap.segments) if s.summary_centroids != n_centroids]
        if todo:
            with W.undo_on_error(self._root):
                self._commit(C.rewrite(self._root, self._snap, todo, self.memory_budget, body))
        elif self._snap.manifest.get("summary_centroids") != n_centroids:
            self._commit(body)

    def derive(
        self,
        path: str | os.PathLike,
        pruner: Pruner | str,
        *,
        dtype: str | None = None,
        overwrite: bool = False,
        batch_size: int = 1024,
        progress: bool = False,
        signal: str | dict[str, float] | None = None,
        rerank: bool = True,
        **pruner_params: Any,
    ) -> Index:
        """Write a pruned copy of the live pages to a new collection ``path`` without re-encoding.

        ``dtype`` picks the new codec (default: this one's). Pages are re-pruned from their
        stored vectors and importance (a *full* index, built with ``pruner="none"``, keeps every
        vector). ``signal=`` prunes by a stored signal, or a blend ``{name: weight}`` of them
        (each min-max normalised per page). ``rerank=False`` makes a ``binary`` index without
        its float16 rerank copy. Returns the new index, open read-only.
        """
        pruner = make_pruner(pruner, **pruner_params)
        config = D.derived_record(pruner, signal, self.pruner_config, self.signal_names, self.path)
        dst = Index.create(path, self.dim, dtype or self.codec, encoder=self.encoder, overwrite=overwrite,
                           signals=self.signal_names, merged=self.merged or pruner.merges, rerank=rerank,
                           summary_centroids=self._snap.manifest.get("summary_centroids") or 4, pruner=config, _aside=True)
        try:
            if L.residual_bits(dst.codec):  # trained on a sample of this collection, not on the first batch
                dst.train_codebook(T.sample_live(self._snap))
            D.copy_pages(self.iter_pages(batch_size), len(self), lambda pages: D.reprune(pages, pruner, config, signal),
                         dst._write_all, batch_size=batch_size, progress=progress, desc=f"prune ({pruner.name})")
            if self.skipped:
                dst.record_skipped(self.skipped)
        except BaseException:
            dst.abandon()  # a failed derive leaves nothing at ``path`` (and what was there as it was)
            raise
        dst.close()
        return Index.open(path)

    def _write_all(self, prepared: Prepared) -> None:
        self._write(prepared, max(1, len(prepared.ids)), replace=False)

    def copy_to(self, path: str | os.PathLike, *, rerank: bool | None = None, overwrite: bool = False,
                progress: bool = False, summary_centroids: int | None = None, skipped: bool = True,
                desc: str = "copy") -> None:
        """Write every live page, as stored, to a new collection ``path`` with this one's settings and pruner record.

        ``rerank=False`` drops a binary index's rerank copy; ``summary_centroids`` defaults to
        this one's (4 when it has none); ``skipped`` copies the skipped-source records.
        With ``overwrite`` an existing collection at ``path`` (this one included) is replaced in
        one atomic exchange when the copy is complete.
        """
        cfg = self.pruner_config
        cent = summary_centroids if summary_centroids is not None else (self._snap.manifest.get("summary_centroids") or 4)
        dst = Index.create(path, self.dim, self.codec, encoder=self.encoder, overwrite=overwrite, signals=self.signal_names,
                           merged=self.merged, rerank=self.has_rerank if rerank is None else rerank,
                           summary_centroids=cent, pruner=cfg, _aside=True)
        try:
            if self.codebook is not None:  # the same codebook: the decoded pages encode back to their codes
                dst.train_codebook(self.codebook)
            D.copy_pages(self.iter_pages(), len(self), lambda pages: D.as_stored(pages, cfg), dst._write_all,
                         progress=progress, desc=desc)
            if skipped and self.skipped:
                dst.record_skipped(self.skipped)
        except BaseException:
            dst.abandon()  # an interrupted copy never replaces what is at ``path`` (repack: this index)
            raise
        dst.close()

    @classmethod
    def upgrade(cls, source: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False,
                progress: bool = False) -> Index:
        """Rewrite a version 1/2 file (or any collection) as a current-version collection at ``path``."""
        with cls.open(source) as src:
            src.copy_to(path, overwrite=overwrite, progress=progress, summary_centroids=4, skipped=False, desc="upgrade")
        return cls.open(path)

