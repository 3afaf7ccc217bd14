"""One build pipeline: sources → pages → encode → prune → write.

The CLI (``colprune build``), the study (PDF-folder datasets) and a distributed build all call
:func:`build`, so the loop that turns files into index pages exists once.

Page ids
--------
A page's id is its file's path **relative to** ``id_root``, with ``/`` separators, plus
``#N`` (1-based) for PDF pages. By default ``id_root`` is, for a folder given as input, that
folder itself, and for a file given as input, the folder that holds it. So ``small/``,
``./small`` and ``/abs/small`` all give the ids ``file.pdf#3`` and ``sub/other.pdf#1``, and
``small/file.pdf`` gives ``file.pdf#3``: ids do not depend on the working directory. Pass
``id_root`` (CLI ``--id-root``) to keep a common prefix, e.g. ``id_root="."`` gives
``small/file.pdf#3``. Two inputs that map to the same id are refused before anything is
encoded.

Page metadata
-------------
Each page records ``source`` (its file relative to the id root: the page id without ``#N``,
so ``--where source=sub/file.pdf`` matches what ``search`` and ``info`` print however the
folder was named), ``path`` (the file's absolute path, to reopen it), ``page`` (1-based),
``kind`` and ``sha256``; with ``store_text=True`` (CLI ``--store-text``) also ``text``: what
the text encoder read, or a PDF page's text layer for an image encoder ("" for an image
file), at most :data:`TEXT_LIMIT` characters (``text_truncated: true`` when cut). Indexes
built before kept ``source`` as the path typed at build time; they read as they are.

What a build does
-----------------
1. Takes the writer lock on ``output`` before any page is read or model loads: an existing
   index is opened (once: the build appends through that open index) and the settings are
   checked on it (:func:`check_settings`): encoder, codec, pruner and dimension must match
   what the index holds, else :class:`~colprune.errors.SettingsMismatchError` says what it
   holds and what to run instead. A new index is created at once when its settings are known
   from the model's config (dim, kind), else at the first commit. A second build of the same
   ``output`` gets :class:`~colprune.errors.LockedError` at once.
2. Lists every page of the inputs (PDF page counts, images, text files). An unreadable,
   encrypted, truncated or corrupt file is *skipped* with its reason (``strict=True``: raises).
   Still before the model loads, files that the encoder's kind cannot read are dropped (an
   image for a text encoder, a PDF without any text layer, an empty text file): when no page
   is left, :class:`~colprune.errors.InvalidInputError` names each file's reason.
3. A reader thread extracts text (text encoders) or renders images (visual encoders) one file
   at a time, ahead of the encoder, through a bounded queue (pdfium calls release the GIL,
   so reading overlaps the model's forward pass).
4. Pages the encoder cannot embed (a blank page for a text encoder, an empty image) are
   skipped with their reason; the build goes on. The progress bar counts them.
5. Pages go to the encoder in micro-batches (:mod:`~colprune.pipeline.batching`: about one
   forward pass of tokens for a text encoder, a few images for an image encoder); after each
   the bar moves by its pages and encoded pages are pruned and committed every
   ``commit_pages`` pages or ``commit_seconds`` seconds, whichever comes first
   (:class:`PageWriter`, the one commit loop, which :func:`build_embeddings`, the study and
   the Ray build's shard writers use too). Ctrl-C commits what was encoded (only the
   micro-batch in flight is lost): ``on_event`` receives ``("interrupted", report_dict)`` and
   the KeyboardInterrupt is re-raised. A new index into which nothing was committed is
   removed (an index ``overwrite`` would have replaced stays as it was).

Resuming: pages already in the index are not encoded again. Pages the index recorded as
skipped are tried again only with ``retry_skipped=True``. Each page records its file's
``sha256``; a page whose file changed since it was indexed is replaced with ``upsert=True``
(needs ``Index.upsert``) and otherwise listed in ``BuildReport.changed_not_replaced``.

Events passed to ``on_event(kind, info)``: ``"skipped"`` (``id``, ``reason``), ``"pages"``
(``total``, ``todo``, ``held``: the pages the index held before, ``model``: the encoder's
name), ``"loading"`` (``model``: about to load it; an exception raised here stops the build
before any work), ``"encoded"`` (``pages``: one encoder call done), ``"committed"``
(``pages``, ``indexed``), ``"interrupted"`` and ``"done"`` (the report as a dict).

Modules: :mod:`~colprune.pipeline.pages` (listing and reading), :mod:`~colprune.pipeline.settings`
(the settings, signal and model checks), :mod:`~colprune.pipeline.writer` (the commit loop),
:mod:`~colprune.pipeline.builder` (``build``), :mod:`~colprune.pipeline.batching` (micro-batches),
:mod:`~colprune.pipeline.embeddings`
(``build_embeddings``), :mod:`~colprune.pipeline.report` and :mod:`~colprune.pipeline.memory`.
"""

from __future__ import annotations

from .builder import build
from .embeddings import build_embeddings
from .pages import (
    NO_TEXT,
    TEXT_LIMIT,
    PageJob,
    file_sha256,
    list_files,
    list_pages,
    page_id,
    page_metadata,
    read_pages,
    readable_pages,
)
from .report import BuildReport, why_nothing
from .settings import DEFAULT_IMPORTANCE, check_model, check_settings, check_signal, model_dim, model_kind
from .writer import PageWriter

__all__ = ["build", "build_embeddings", "BuildReport", "PageWriter", "PageJob", "list_files", "list_pages",
           "read_pages", "readable_pages", "page_id", "page_metadata", "file_sha256", "check_settings", "check_signal",
           "check_model", "model_dim", "model_kind", "why_nothing", "NO_TEXT", "TEXT_LIMIT", "DEFAULT_IMPORTANCE"]
