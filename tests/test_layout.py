import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import shared_path
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from colprune.study.layout import cells_in_boxes, content_share, ink_density, load_coco_boxes

ROOT = Path(__file__).resolve().parents[1]


def test_cells_in_boxes_by_cell_centre():
    # a 4x4 grid over a 40x40 page; one box over the top-left quarter
    inside = cells_in_boxes([(0, 0, 20, 20)], (40, 40), (4, 4)).reshape(4, 4)
    assert_array_equal(inside, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_ink_density_and_content_share():
    img = Image.new("L", (40, 20), 255)
    img.paste(0, (0, 0, 10, 10))  # the top-left cell is black
    d = ink_density(img, (2, 4))
    assert_allclose(d, [1, 0, 0, 0, 0, 0, 0, 0])
    in_box = np.array([True, True, False, False])
    assert content_share(np.array([0, 1]), in_box) == {"kept_in_boxes": 1.0, "page_in_boxes": 0.5, "lift": 2.0}


def test_publaynet_boxes_load_and_the_check_runs(tmp_path):
    data = shared_path("data", "pages", "publaynet")
    boxes = load_coco_boxes(str(data / "samples.json"))
    assert len(boxes) == 20 and sum(len(b) for b in boxes.values()) == 193
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import save_tiny_colqwen2

    model = save_tiny_colqwen2(str(tmp_path / "colqwen2"))
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "layout_check.py"), "--model", model, "--json"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    ink = out["methods"]["ink-density"]
    assert out["pages"] == 20 and ink["lift"] > 1.3  # dark pixels are where the text is
    assert 0.3 < ink["page_in_boxes"] < 0.9
