"""Do pruners keep content? Kept patches against layout boxes, and a pixel-statistics pruner.

For a page with a patch grid and COCO layout boxes (text, title, list, table, figure), a
patch is *in content* when its cell's centre lies inside a box. A pruner that finds content
keeps a larger share of in-content patches than the share of the page the boxes cover
(``lift`` > 1); random pruning sits at lift 1.

:func:`ink_density` is a model-free importance signal: the share of dark pixels in each
patch's cell. It needs only the page image and the grid.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["load_coco_boxes", "cells_in_boxes", "ink_density", "content_share"]


def load_coco_boxes(path: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{file_name: [(x, y, w, h), ...]}`` from a COCO annotation file."""
    with open(path) as f:
        coco = json.load(f)
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    boxes: dict[str, list] = {n: [] for n in names.values()}
    for a in coco["annotations"]:
        boxes[names[a["image_id"]]].append(tuple(a["bbox"]))
    return boxes


def cells_in_boxes(boxes, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``(rows * cols,)`` bool, row-major: cell centre inside any box (image pixel coordinates)."""
    w, h = size
    rows, cols = grid
    cy = (np.arange(rows) + 0.5) * h / rows
    cx = (np.arange(cols) + 0.5) * w / cols
    X, Y = np.meshgrid(cx, cy)
    inside = np.zeros((rows, cols), bool)
    for x, y, bw, bh in boxes:
        inside |= (X >= x) & (X <= x + bw) & (Y >= y) & (Y <= y + bh)
    return inside.ravel()


def ink_density(image, grid: tuple[int, int], threshold: int = 200) -> np.ndarray:
    """``(rows * cols,)`` share of pixels darker than ``threshold`` (0-255 grey) per grid cell."""
    g = np.asarray(image.convert("L"), dtype=np.uint8)
    rows, cols = grid
    h, w = g.shape
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    dark = g < threshold
    return np.array([dark[ys[r] : ys[r + 1], xs[c] : xs[c + 1]].mean() if ys[r + 1] > ys[r] and xs[c + 1] > xs[c] else 0.0
                     for r in range(rows) for c in range(cols)], dtype=np.float32)


def content_share(kept_cells: np.ndarray, in_box: np.ndarray) -> dict[str, Any]:
    """Share of kept cells in content, share of the page in content, and their ratio (lift)."""
    kept_in = float(in_box[kept_cells].mean()) if kept_cells.size else float("nan")
    page = float(in_box.mean())
    return {"kept_in_boxes": kept_in, "page_in_boxes": page, "lift": kept_in / page if page else float("nan")}
