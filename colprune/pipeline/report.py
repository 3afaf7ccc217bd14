"""What a build did: :class:`BuildReport`, its warning line and its closing summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .pages import NO_TEXT, NOT_TEXT

__all__ = ["BuildReport", "why_nothing", "SCAN_HINT"]

#: Said after the reasons when pages had no text for a text encoder (scans, images).
SCAN_HINT = "scans and images need an image encoder: --model vidore/colqwen2-v1.0-hf"
_MAX_FILES = 8


@dataclass
class BuildReport:
    """What a build did.

    ``skipped`` maps a page id (or, for a file that could not be opened, the file's id: its
    path relative to the id root, without ``#N``) to the reason; ``changed_not_replaced``
    lists ids whose file changed (sha256) since they were indexed but were kept because
    ``upsert`` was off. ``info`` is the index's storage report when the build ended
    (:func:`colprune.index.storage.storage_report`: what ``colprune info`` shows), read from
    the build's own open index; None when no index was written or the build failed.
    ``seconds`` is the whole build; ``load_seconds`` the part of it spent loading the model (0
    when the caller passed an encoder or none was needed), which ``pages_per_second`` leaves out.
    """

    output: str = ""
    indexed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    already_present: int = 0
    replaced: int = 0
    changed_not_replaced: list[str] = field(default_factory=list)
    seconds: float = 0.0
    load_seconds: float = 0.0
    interrupted: bool = False
    pages_total: int = 0
    info: dict[str, Any] | None = None

    @property
    def pages_per_second(self) -> float:
        """Pages indexed or replaced per second of the build, the model's load left out."""
        seconds = self.seconds - self.load_seconds
        return (self.indexed + self.replaced) / seconds if seconds > 0 else 0.0

    def warning_line(self) -> str | None:
        """One line counting the skipped pages by reason, or None when nothing was skipped."""
        if not self.skipped:
            return None
        counts: dict[str, int] = {}
        for reason in self.skipped.values():
            key = reason.split(" (")[0].split(";")[0].split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        return f"warning: skipped {len(self.skipped)} pages or files ({parts})"

    def summary(self) -> str:
        """The closing line: what was indexed, skipped, already there, replaced."""
        rate = (f"model load {self.load_seconds:.1f} s; {self.pages_per_second:.2f} pages/s encoding"
                if self.load_seconds > 0 else f"{self.pages_per_second:.2f} pages/s")
        bits = [f"indexed {self.indexed} {'page' if self.indexed == 1 else 'pages'} in {self.seconds:.1f} s ({rate})"]
        if self.skipped:
            bits.append(f"skipped {len(self.skipped)}")
        if self.already_present:
            bits.append(f"{self.already_present} already in the index")
        if self.replaced:
            bits.append(f"replaced {self.replaced} changed")
        if self.changed_not_replaced:
            bits.append(f"{len(self.changed_not_replaced)} changed on disk but kept (upsert off)")
        if self.interrupted:
            bits.append("INTERRUPTED (everything committed so far is kept; run again to resume)")
        return f"{self.output}: " + ", ".join(bits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"pages_per_second": self.pages_per_second}


def storage_report(index: Any) -> dict[str, Any]:
    """:func:`colprune.index.storage.storage_report` of an open index, imported when first needed
    (the store loads only once a build writes)."""
    from ..index.storage import storage_report as report

    return report(index)



def _file_of(page_id: str) -> str:
    head, sep, tail = page_id.rpartition("#")
    return head if sep and tail.isdigit() else page_id


def _said(counts: dict[str, int]) -> str:
    """One file's reasons (reason → pages) in a few words."""
    said = []
    for reason, n in counts.items():
        if reason == NO_TEXT:
            said.append(f"{n} page{'s' if n > 1 else ''} without a text layer")
        elif reason == NOT_TEXT:
            said.append("an image, no text layer")
        else:
            said.append(reason if n == 1 else f"{n} pages: {reason}")
    return ", ".join(said)


def why_nothing(skipped: dict[str, str]) -> str:
    """``no page could be indexed: a.pdf: encrypted PDF (needs a password); c.pdf: 12 pages without a
    text layer (...)``: the reasons of ``skipped`` (page or file id → reason), once per file; files
    with the same reason are named together (``20 files: an image, no text layer (a.png, b.png, ...)``).

    The line ends with :data:`SCAN_HINT` when, and only when, pages had no text for a text encoder.
    """
    if not skipped:
        return "no page could be indexed: the inputs hold no PDF, image or .txt/.md file"
    by_file: dict[str, dict[str, int]] = {}
    for page_id, reason in skipped.items():
        counts = by_file.setdefault(_file_of(page_id), {})
        counts[reason] = counts.get(reason, 0) + 1
    by_said: dict[str, list[str]] = {}
    for name, counts in by_file.items():
        by_said.setdefault(_said(counts), []).append(name)
    parts = []
    for said, names in by_said.items():
        if len(names) == 1:
            parts.append(f"{names[0]}: {said}")
        else:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            parts.append(f"{len(names)} files: {said} ({shown})")
    shown = "; ".join(parts[:_MAX_FILES])
    if len(parts) > _MAX_FILES:
        shown += f"; and {len(parts) - _MAX_FILES} more"
    hint = any(r in (NO_TEXT, NOT_TEXT) for r in skipped.values())
    return f"no page could be indexed: {shown}" + (f" ({SCAN_HINT})" if hint else "")
