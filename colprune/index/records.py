"""What the index stores and returns, and the checks every input passes before anything is written.

:class:`Page` is one stored page as read back, :class:`Hit` one search result; the ``check_*``
functions validate ids, queries, counts, grids, metadata and dtypes, raising
:class:`~colprune.errors.InvalidInputError` with a message that names the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..errors import InvalidInputError, UnknownIdError
from ..hooks import page_reader
from ..kernels import as_query_batch
from ..pruning import PrunedPage
from .layout import stored_bytes

__all__ = ["Hit", "Page", "codec_bytes", "check_id", "check_queries", "check_count", "check_search", "check_two_stage",
           "check_delete", "check_ids", "check_entries", "default_rerank", "MAX_ID_BYTES", "MAX_QUERY_NORM"]

#: the grid row stored for a page without a patch grid
NO_GRID = (-1, -1)
#: longest accepted page id, in UTF-8 bytes
MAX_ID_BYTES = 1024
#: largest accepted L2 norm of a query token vector (keeps every float32 score finite)
MAX_QUERY_NORM = 1e12


class _HitBase(NamedTuple):
    id: str
    score: float


class Hit(_HitBase):
    """One search result: ``(id, score)``, the page's ``metadata`` dict, and its content on demand.

    Compares equal to the plain tuple ``(id, score)``. :meth:`text` and :meth:`image` give the
    page itself, for a generator to read or a person to see (:mod:`colprune.content`).
    """

    metadata: dict[str, Any]

    def __new__(cls, id: str, score: float, metadata: dict[str, Any] | None = None):  # noqa: A002
        self = super().__new__(cls, id, score)
        self.metadata = {} if metadata is None else metadata
        return self

    def text(self, root: str | None = None) -> str:
        """The page's text: stored at build (``colprune build --store-text``), else read from the
        PDF's text layer or the text file; ``""`` for image pages.

        ``root``: the folder the page ids are relative to, as it is now, when the files moved
        since the build. Raises :class:`~colprune.errors.NotFoundError` naming the file when
        it is not there (see :func:`colprune.content.page_text`).
        """
        return page_reader().text(self, root)

    def image(self, scale: float = 2.0, root: str | None = None):
        """The page as an RGB PIL image: the PDF page rendered at ``scale`` (1.0 = 72 dpi; 2.0 is
        144 dpi), or the image file. ``root`` and errors: :meth:`text`'s."""
        return page_reader().image(self, root, scale)


@dataclass(frozen=True)
class Page:
    """One stored page.

    Attributes
    ----------
    id : str
    vectors : (n_kept, dim) float16 or float32, as stored (int8 dequantised; binary from its
        float16 rerank copy, or as ±1 signs)
    positions : (n_kept,) int64
        Row of each kept vector in the encoder's output.
    importance : (n_kept,) float32
        NaN where the page was added without importance.
    patch_mask : (n_kept,) bool
        True for image-patch rows, False for special/prompt tokens.
    n_original : int
        Vectors the page had before pruning.
    grid : (rows, cols) or None
    metadata : dict
    signals : dict of name -> (n_kept,) float32
    covers : tuple of (k_i,) int64 arrays, or None
        Merged indexes: the encoder-output rows each stored vector stands for.
    """

    id: str
    vectors: np.ndarray
    positions: np.ndarray
    importance: np.ndarray
    patch_mask: np.ndarray
    n_original: int
    grid: tuple[int, int] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    signals: dict[str, np.ndarray] = field(default_factory=dict)
    covers: tuple[np.ndarray, ...] | None = None

    @property
    def n_kept(self) -> int:
        return int(self.vectors.shape[0])


def codec_bytes(codec: str, dim: int) -> int:
    """Stored bytes per vector (:func:`colprune.index.layout.stored_bytes`; residual codecs 2 + dim·nbits/8)."""
    return stored_bytes(codec, dim)


def blend_signals(signals: dict[str, np.ndarray], spec: str | dict[str, float]) -> np.ndarray:
    """One stored signal by name, or a weighted sum of signals each min-max normalised over the page."""
    if isinstance(spec, str):
        return signals[spec]
    out = np.zeros(len(next(iter(signals.values()))), np.float64)
    for name, w in spec.items():
        v = signals[name].astype(np.float64)
        span = v.max() - v.min()
        out += float(w) * ((v - v.min()) / span if span > 0 else np.zeros_like(v))
    return out


def kept_signals(signals: dict[str, np.ndarray], page: PrunedPage) -> dict[str, np.ndarray]:
    """Signals of the rows ``page`` kept; a merged vector gets the mean over the rows it merged."""
    if page.covers is None:
        return {k: v[page.positions] for k, v in signals.items()}
    return {k: np.array([v[c].mean() for c in page.covers], np.float32) for k, v in signals.items()}


def check_grid(grid, n_patch: int, what: str) -> None:
    """A ``(rows, cols)`` patch grid with positive sides and ``n_patch`` cells."""
    try:
        rows, cols = (int(x) for x in grid)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: grid must be (rows, cols), got {grid!r}") from None
    if rows < 1 or cols < 1:
        raise InvalidInputError(f"{what}: grid {rows}x{cols} must have positive sides")
    if rows * cols != n_patch:
        raise InvalidInputError(f"{what}: grid {rows}x{cols} has {rows * cols} cells but the page has {n_patch} patch rows")


def check_id(doc_id: object) -> str:
    """A page id must be a non-empty string of at most ``MAX_ID_BYTES`` UTF-8 bytes, without NUL or line breaks."""
    if not isinstance(doc_id, str):
        raise InvalidInputError(f"document ids must be strings, got {type(doc_id).__name__} {doc_id!r}")
    if not doc_id:
        raise InvalidInputError("empty document id ''")
    try:
        n = len(doc_id.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInputError(f"document id {doc_id!r} cannot be encoded as UTF-8 (a lone surrogate?)") from None
    if n > MAX_ID_BYTES:
        raise InvalidInputError(f"document id {doc_id[:40]!r}... is {n} bytes; the limit is {MAX_ID_BYTES}")
    if any(c in doc_id for c in "\x00\n\r"):
        raise InvalidInputError(f"document id {doc_id!r} contains NUL or a line break")
    return doc_id


def check_ids(ids: object, name: str = "ids") -> list:
    """A call's page ids as a list; a str (of ids?) or a non-sequence refused, naming the argument.

    The ids themselves are checked by :func:`check_id`.
    """
    if isinstance(ids, (str, bytes)):
        raise InvalidInputError(f"{name} must be a sequence of str, not a {type(ids).__name__} "
                                f"(one page: {name}=[{ids!r}])")
    if isinstance(ids, dict) or not hasattr(ids, "__iter__"):
        raise InvalidInputError(f"{name} must be a sequence of str, not {type(ids).__name__} {ids!r}")
    return list(ids)


def check_entries(n: int, **per_page: object) -> None:
    """Per-page arguments (``embeddings=``, ``importance=``...) each a sequence of ``n`` entries (or None, but for embeddings)."""
    for name, seq in per_page.items():
        if seq is None and name == "embeddings":
            raise InvalidInputError("embeddings must be a sequence of (n_i, dim) arrays, one per id, not None")
        if seq is None:
            continue
        if isinstance(seq, (str, bytes, dict)) or not hasattr(seq, "__len__"):
            raise InvalidInputError(f"{name} must be a sequence with one entry per id, not {type(seq).__name__}")
        if len(seq) != n:
            raise InvalidInputError(f"{name} has {len(seq)} entries for {n} ids")


def check_queries(queries, dim: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Queries as CSR float32 (:func:`~colprune.kernels.as_query_batch`), refused with
    :class:`InvalidInputError` when malformed or so large that scores would overflow float32.

    Returns ``(vectors (T, dim) float32, offsets (n_queries + 1,) int64, single)``, ``single``
    when one 2-D query was given.
    """
    try:
        qv, qoff, single = as_query_batch(queries, dim=dim)
    except InvalidInputError:
        raise
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    norms = np.sqrt(np.einsum("ij,ij->i", qv.astype(np.float64), qv.astype(np.float64)))
    if norms.size and norms.max() > MAX_QUERY_NORM:
        raise InvalidInputError(f"query token vectors must have norms <= {MAX_QUERY_NORM:g} (got {norms.max():.3g}): "
                                "scores would overflow float32; scale the query down (embeddings are about unit length)")
    return qv, qoff, single


def check_count(value: object, name: str) -> int:
    """An integer >= 1 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_floating(x, what: str) -> None:
    """Refuse integer or boolean embeddings (NumPy or torch dtypes); objects without a dtype pass."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return
    if isinstance(dt, np.dtype):
        floating = dt.kind == "f"
    else:  # a torch dtype (bfloat16 has no NumPy twin)
        floating = bool(getattr(dt, "is_floating_point", False))
    if not floating:
        raise InvalidInputError(f"{what}: embeddings must be floating-point, got dtype {dt}")


def meta_json(m: dict | None, what: str) -> str:
    """A page's metadata as the JSON text stored (``{}`` for None); refused unless a JSON-able dict."""
    if m is None:
        m = {}
    if not isinstance(m, dict):
        raise InvalidInputError(f"{what}: metadata must be a dict, got {type(m).__name__}")
    try:
        return json.dumps(m, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"{what}: metadata is not JSON-serialisable ({e})") from None


# -- the arguments of search and delete, checked alike by Index and ShardedIndex ------------

def default_rerank(k: int) -> int:
    """Pages a binary search shortlists by Hamming MaxSim before rescoring, unless ``rerank=`` says."""
    return max(100, 10 * k)


def check_search(k: object, rerank: object, candidates: object) -> tuple[int, int | None, int | None]:
    """``search``'s ``k`` (>= 1), ``rerank`` (>= 0 or None) and ``candidates`` (>= 1 or None), checked."""
    k = check_count(k, "k")
    if candidates is not None:
        candidates = check_count(candidates, "candidates")
    if rerank is not None and (isinstance(rerank, bool) or not isinstance(rerank, (int, np.integer)) or rerank < 0):
        raise InvalidInputError(f"rerank must be an integer >= 0, got {rerank!r}")
    return k, None if rerank is None else int(rerank), candidates


def check_two_stage(codec: str, stored_centroids: int | None, n_centroids: int | None, what: str = "index") -> None:
    """Refuse two-stage search (``candidates=``) on a codec without summaries, or with other summaries than asked."""
    if codec not in ("float16", "float32"):
        raise InvalidInputError(f"two-stage search (candidates=) needs a float16/float32 {what}, not {codec}")
    if n_centroids is not None and stored_centroids not in (0, int(n_centroids)):
        raise InvalidInputError(f"this {what} stores {stored_centroids}-centroid summaries; "
                                f"n_centroids={n_centroids} would need `colprune summarize --centroids {n_centroids}`")


def check_delete(ids: object, where: object, missing: object) -> list | None:
    """``delete``'s arguments checked: ids as a list (one id given as a str is one id) or None."""
    if ids is None and where is None:
        raise InvalidInputError("delete needs ids, where=, or both")
    if missing not in ("error", "ignore"):
        raise InvalidInputError(f"missing must be 'error' or 'ignore', got {missing!r}")
    if ids is None or isinstance(ids, str):
        return None if ids is None else [ids]
    if isinstance(ids, (bytes, dict)) or not hasattr(ids, "__iter__"):
        raise InvalidInputError(f"ids must be a str or a sequence of str, not {type(ids).__name__} {ids!r}")
    ids = list(ids)
    bad = next((i for i in ids if not isinstance(i, str)), None)
    if bad is not None:
        raise InvalidInputError(f"ids must be a str or a sequence of str; got {type(bad).__name__} {bad!r} among them")
    return ids


def unknown_ids(path: str, unknown: list) -> UnknownIdError:
    """The error for ids a delete was asked for that the index does not hold (nothing is deleted)."""
    return UnknownIdError(f"{len(unknown)} id(s) not in {path}, e.g. {unknown[0]!r}; nothing was deleted "
                          "(missing='ignore' skips them)")

