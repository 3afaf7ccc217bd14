"""``colprune show``: a page with its kept patches drawn over it, and the importance heat map."""

from __future__ import annotations

import os

import numpy as np

from .errors import InvalidInputError
from .index import Index, Page

__all__ = ["patch_cells", "render_page"]


def patch_cells(page: Page) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell (row-major index) of each kept patch vector, and which stored rows are patches.

    Pruners keep every non-patch row, so the original patch rows are all rows except the
    stored non-patch ones; a kept patch's cell is its rank among them.
    """
    if page.grid is None:
        raise InvalidInputError(f"page {page.id!r} has no patch grid (text encoders have none): nothing to draw")
    non_patch = set(page.positions[~page.patch_mask].tolist())
    original_patch_rows = np.array([r for r in range(page.n_original) if r not in non_patch])
    rows = page.positions[page.patch_mask]
    cells = np.searchsorted(original_patch_rows, rows)
    if cells.size and (cells.max() >= page.grid[0] * page.grid[1] or not np.array_equal(original_patch_rows[cells], rows)):
        raise InvalidInputError(f"page {page.id!r}: stored positions do not fit its {page.grid} grid")
    return cells, page.patch_mask


def source_under(root: str, source: str, page_id: str) -> str:
    """The page's source file, only if it lies under ``root`` (links resolved): index files may be hostile."""
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, str(source)))
    if os.path.commonpath([base, path]) != base:
        raise InvalidInputError(f"page {page_id!r} names the source {source!r}, outside {root!r}: refused "
                                "(give the folder that holds the sources as the root, or pass the image)")
    return path


def render_page(index: Index, page_id: str, out: str, *, dpi: int = 110, image=None, root: str = ".") -> str:
    """Write a PNG: the page with pruned patches dimmed and kept ones outlined, next to the
    importance of the kept patches on the grid. The page image is re-read from the source path
    and page number in the page's metadata unless ``image`` is given; that path must lie under
    ``root`` (default: the current folder), so a crafted index cannot make it open other files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    page = index.get(page_id)
    cells, is_patch = patch_cells(page)
    rows, cols = page.grid
    if image is None:
        from .encoders.sources import PageSource

        meta = page.metadata
        if "source" not in meta:
            raise InvalidInputError(f"page {page_id!r} has no source path in its metadata; pass the image")
        kind = meta.get("kind") or ("pdf" if str(meta["source"]).lower().endswith(".pdf") else "image")
        source = source_under(root, meta.get("path") or meta["source"], page_id)  # new indexes: path is absolute
        image = PageSource(page_id, source, int(meta.get("page", 1)), kind).image(dpi=dpi)
    w, h = image.size
    kept = np.zeros(rows * cols, bool)
    kept[cells] = True
    heat = np.full(rows * cols, np.nan)
    heat[cells] = page.importance[is_patch]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 8 * h / max(w, 1) * 0.8 + 1.5))
    ax1.imshow(image)
    cw, ch = w / cols, h / rows
    for c in range(rows * cols):
        r, k = divmod(c, cols)
        if kept[c]:
            ax1.add_patch(Rectangle((k * cw, r * ch), cw, ch, fill=False, edgecolor="tab:orange", linewidth=0.6))
        else:
            ax1.add_patch(Rectangle((k * cw, r * ch), cw, ch, facecolor="black", alpha=0.55, linewidth=0))
    ax1.set_title(f"{os.path.basename(page_id)}: {int(kept.sum())} of {rows * cols} patches kept")
    ax1.axis("off")
    im = ax2.imshow(heat.reshape(rows, cols), cmap="viridis", aspect=(h / rows) / (w / cols))
    ax2.set_title("importance of kept patches (blank = pruned)")
    ax2.axis("off")
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
    pruner = index.pruner_config
    fig.suptitle(f"pruner: {pruner['name']} {pruner['params']}" if pruner else "")
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
