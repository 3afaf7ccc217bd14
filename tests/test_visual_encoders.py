"""ColQwen2 / ColPali encoders: the real encoder code on tiny config-built models and real page images."""

import numpy as np
import pytest
import torch
from conftest import shared_path
from numpy.testing import assert_allclose
from PIL import Image
from tiny_models import save_tiny_colpali, save_tiny_colqwen2

import colprune as cp
from colprune.cli import main
from colprune.encoders import VisualEncoder, collect_pages, load_encoder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {"colqwen2": save_tiny_colqwen2(str(root / "colqwen2")), "colpali": save_tiny_colpali(str(root / "colpali"))}


@pytest.fixture(scope="module")
def page_images():
    folder = shared_path("data", "pages", "arxivqa", "images")
    return [p.image() for p in collect_pages([str(folder)])[:3]]


@pytest.mark.parametrize("kind", ["colqwen2", "colpali"])
def test_real_pages_give_patches_grid_and_importance(checkpoints, page_images, kind):
    enc = load_encoder(checkpoints[kind])
    assert isinstance(enc, VisualEncoder) and enc.importance == "eos" and enc.dim == 16
    pages = enc.encode_pages(page_images, batch_size=2)
    for page in pages:
        n_patch = int(page.patch_mask.sum())
        assert n_patch > 0 and page.importance.shape == page.patch_mask.shape == (page.vectors.shape[0],)
        assert page.grid is not None and page.grid[0] * page.grid[1] == n_patch
        assert_allclose(np.linalg.norm(page.vectors, axis=1), 1.0, rtol=1e-5)
        assert set(page.signals) == {"eos", "indegree", "indegree_mid", "norm", "global_sim"}
        assert_allclose(page.signals["global_sim"], page.vectors @ page.vectors[-1], rtol=1e-5, atol=1e-6)
        assert np.isfinite(page.importance).all() and (page.importance >= 0).all()
    if kind == "colpali":
        assert all(p.grid == (8, 8) for p in pages)


@pytest.mark.parametrize("kind", ["colqwen2", "colpali"])
def test_eos_attention_equals_a_hand_computation(checkpoints, page_images, kind):
    enc = load_encoder(checkpoints[kind])
    page = enc.encode_pages(page_images[:1])[0]
    batch = enc.processor(images=[page_images[0].convert("RGB")])
    keys = ("input_ids", "attention_mask", "token_type_ids", "pixel_values", "image_grid_thw")
    inputs = {k: v for k, v in batch.items() if k in keys}
    with torch.no_grad():
        out = enc.model(**inputs, output_attentions=True)
    last = out.attentions[-1][0].mean(dim=0)  # (s, s), one page: no padding
    assert_allclose(page.signals["eos"], last[-1].numpy(), rtol=1e-5, atol=1e-7)
    patch = (batch["input_ids"][0] == enc.image_token_id).numpy()
    assert_allclose(page.patch_mask, patch)
    a = last.numpy()
    want = (a[patch].sum(axis=0) - np.diag(a) * patch)[patch] / (patch.sum() - 1)
    assert_allclose(page.signals["indegree"][patch], want, rtol=1e-5, atol=1e-7)


def test_padding_in_a_batch_does_not_change_pages(checkpoints, page_images):
    enc = load_encoder(checkpoints["colqwen2"])
    small = page_images[0].resize((120, 180))
    together = enc.encode_pages([page_images[1], small], batch_size=2)
    alone = enc.encode_pages([small])
    assert together[1].vectors.shape == alone[0].vectors.shape
    assert_allclose(together[1].importance, alone[0].importance, atol=1e-5)


def test_non_eager_attention_is_refused(checkpoints):
    with pytest.raises(cp.InvalidInputError, match="eager"):
        VisualEncoder(checkpoints["colqwen2"], attn_implementation="sdpa")


def test_int8_quantisation_is_for_text_encoders(checkpoints):
    with pytest.raises(cp.InvalidInputError, match="text encoders only"):
        load_encoder(checkpoints["colqwen2"], quantize="int8")


def test_build_page_images_and_a_pdf_then_search(checkpoints, tmp_path, capsys, monkeypatch):
    images = shared_path("data", "pages", "arxivqa", "images")
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (300, 400), "white").save("blank.pdf")  # a PDF made by Pillow: one image page
    assert main(["build", str(images), "blank.pdf", "-o", "pages.h5", "--model", checkpoints["colqwen2"],
                 "--pruner", "adaptive", "--k", "-0.25", "--batch", "4", "-q"]) == 0
    assert "11 pages" in capsys.readouterr().out
    with cp.Index.open("pages.h5") as index:
        page = index.get("blank.pdf#1")
        assert page.grid is not None and page.n_kept < page.n_original
        assert index.dim == 16 and index.encoder == checkpoints["colqwen2"]
    # the index names a model path: loaded only when the user says so (a file may be hostile)
    assert main(["search", "pages.h5", "what is the figure", "-k", "3"]) == 2
    assert "--trust-index-encoder" in capsys.readouterr().err
    assert main(["search", "pages.h5", "what is the figure", "-k", "3", "--trust-index-encoder"]) == 0
    assert "query what is the figure" in capsys.readouterr().out
    assert main(["search", "pages.h5", "what is the figure", "-k", "3", "--model", checkpoints["colqwen2"]]) == 0


def test_show_draws_kept_patches(checkpoints, tmp_path, capsys):
    from colprune.show import patch_cells

    images = shared_path("data", "pages", "publaynet")
    out = tmp_path / "pages.h5"
    assert main(["build", str(images), "-o", str(out), "--model", checkpoints["colqwen2"], "--pruner", "ratio",
                 "--ratio", "0.3", "-q"]) == 0
    capsys.readouterr()
    with cp.Index.open(out) as index:
        page_id = index.ids[0]
        page = index.get(page_id)
        cells, is_patch = patch_cells(page)
        rows, cols = page.grid
        assert cells.size == is_patch.sum() == round(0.3 * rows * cols) and len(set(cells)) == cells.size
        assert cells.max() < rows * cols
    png = tmp_path / "page.png"
    assert main(["show", str(out), page_id, "-o", str(png)]) == 4  # its source lies outside the current folder
    assert "refused" in capsys.readouterr().err
    assert main(["show", str(out), page_id, "-o", str(png), "--root", str(images)]) == 0
    assert Image.open(png).size[0] > 500
    assert main(["show", str(out), "absent", "-o", str(png)]) == 3  # not found


def test_show_refuses_pages_without_grid(tmp_path, rng=np.random.default_rng(0)):
    from colprune.show import patch_cells

    with cp.Index.create(tmp_path / "t.h5", dim=4) as index:
        index.add(["t"], [rng.standard_normal((3, 4))])
        with pytest.raises(cp.InvalidInputError, match="no patch grid"):
            patch_cells(index.get("t"))
