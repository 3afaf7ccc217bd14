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

What a build does
-----------------
1. Lists every page of the inputs (PDF page counts, images, text files). An unreadable,
   encrypted or corrupt file is *skipped* with its reason (``strict=True``: raises).
2. Before any model loads, opens an existing ``output`` (once: the build appends through that
   open index) and checks the settings on it (:func:`check_settings`): encoder, codec, pruner
   and dimension must match what the index holds, else
   :class:`~colprune.errors.SettingsMismatchError` says what it holds and what to run instead.
3. A reader thread extracts text (text encoders) or renders images (visual encoders) one file
   at a time, ahead of the encoder, through a bounded queue (pdfium calls release the GIL,
   so reading overlaps the model's forward pass).
4. Pages the encoder cannot embed (no text layer for a text encoder, an empty image) are
   skipped with their reason; the build goes on. The progress bar counts them.
5. Encoded pages are pruned and committed every ``commit_pages`` pages or ``commit_seconds``
   seconds, whichever comes first (:class:`PageWriter`, the one commit loop, which
   :func:`build_embeddings`, the study and the Ray build's shard writers use too). Ctrl-C
   keeps everything committed so far: ``on_event`` receives ``("interrupted", report_dict)``
   and the KeyboardInterrupt is re-raised.

Resuming: pages already in the index are not encoded again. Pages the index recorded as
skipped are tried again only with ``retry_skipped=True``. Each page records its file's
``sha256``; a page whose file changed since it was indexed is replaced with ``upsert=True``
(needs ``Index.upsert``) and otherwise listed in ``BuildReport.changed_not_replaced``.

Events passed to ``on_event(kind, info)``: ``"pages"`` (``total``, ``todo``, ``held``: the pages
the index held before, ``model``: the encoder's name), ``"loading"`` (``model``: about to load it; an exception raised here
stops the build before any work), ``"skipped"`` (``id``, ``reason``), ``"committed"``
(``pages``, ``indexed``), ``"interrupted"`` and ``"done"`` (the report as a dict).

Modules: :mod:`~colprune.pipeline.pages` (listing and reading), :mod:`~colprune.pipeline.settings`
(the settings, signal and model checks), :mod:`~colprune.pipeline.writer` (the commit loop),
:mod:`~colprune.pipeline.builder` (``build``), :mod:`~colprune.pipeline.embeddings`
(``build_embeddings``), :mod:`~colprune.pipeline.report` and :mod:`~colprune.pipeline.memory`.
"""

from __future__ import annotations

from .builder import build
from .embeddings import build_embeddings
from .pages import NO_TEXT, PageJob, file_sha256, list_files, list_pages, page_id, read_pages
from .report import BuildReport
from .settings import DEFAULT_IMPORTANCE, check_model, check_settings, check_signal, model_dim
from .writer import PageWriter

__all__ = ["build", "build_embeddings", "BuildReport", "PageWriter", "PageJob", "list_files", "list_pages",
           "read_pages", "page_id", "file_sha256", "check_settings", "check_signal", "check_model", "model_dim",
           "NO_TEXT", "DEFAULT_IMPORTANCE"]
