"""The offline text-token encoder on the real pretrained MiniLM, and page inputs."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import shared_path
from numpy.testing import assert_allclose
from PIL import Image

import colprune as cp
from colprune.cli import main
from colprune.demo import write_demo_pdfs
from colprune.encoders import PageError, collect_pages, load_encoder


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


TEXTS = ["The mitochondria is the powerhouse of the cell.", "Fahrenheit invented the mercury thermometer in 1714."]


def test_pages_have_vectors_mask_and_every_signal(minilm):
    pages = minilm.encode_pages(TEXTS)
    for page, text in zip(pages, TEXTS):
        n = len(minilm.tokenizer(text)["input_ids"])
        assert page.vectors.shape == (n, 384) and page.vectors.dtype == np.float32
        assert_allclose(np.linalg.norm(page.vectors, axis=1), 1.0, rtol=1e-5)
        assert page.patch_mask.tolist() == [False] + [True] * (n - 2) + [False]  # [CLS] ... [SEP]
        assert set(page.signals) == {"cls", "indegree", "indegree_mid", "norm", "global_sim"}
        assert_allclose(page.signals["global_sim"], page.vectors @ page.vectors[0], rtol=1e-5, atol=1e-6)
        assert all(s.shape == (n,) and np.isfinite(s).all() for s in page.signals.values())
        assert_allclose(page.importance, page.signals["cls"])
        assert_allclose(page.signals["cls"].sum(), n, rtol=1e-4)  # one attention row, x tokens (uniform = 1)
        assert page.grid is None


def test_cls_attention_equals_a_hand_computation(minilm):
    from transformers import AutoModel

    page = minilm.encode_pages(TEXTS[:1])[0]
    batch = minilm.tokenizer(TEXTS[:1], return_tensors="pt")
    eager = AutoModel.from_pretrained(cp.encoders.minilm_path(), attn_implementation="eager")
    with torch.no_grad():
        out = eager(**batch, output_attentions=True)
    last = out.attentions[-1][0]  # (heads, s, s)
    a = last.mean(dim=0).numpy()
    n = a.shape[0]
    # signals are attention x tokens in the window, so that uniform attention scores 1
    assert_allclose(page.signals["cls"], last[:, 0, :].mean(dim=0).numpy() * n, rtol=1e-5, atol=1e-6)
    assert_allclose(page.signals["indegree"], (a.sum(axis=0) - np.diag(a)) / (n - 1) * n, rtol=1e-5, atol=1e-6)
    h = out.last_hidden_state[0]
    assert_allclose(page.vectors, (h / h.norm(dim=-1, keepdim=True)).numpy(), rtol=1e-4, atol=1e-5)


def test_batching_and_padding_do_not_change_pages(minilm):
    together = minilm.encode_pages(TEXTS, batch_size=2)
    alone = [minilm.encode_pages([t])[0] for t in TEXTS]
    for a, b in zip(together, alone):
        assert_allclose(a.vectors, b.vectors, atol=1e-5)
        assert_allclose(a.importance, b.importance, atol=1e-6)


def test_queries_retrieve_their_page(minilm, tmp_path):
    pages = minilm.encode_pages(TEXTS)
    with cp.Index.create(tmp_path / "t.h5", dim=384, encoder="minilm") as index:
        index.add(["cell", "thermo"], [p.vectors for p in pages], [p.importance for p in pages],
                  pruner=cp.AdaptiveThreshold(-0.25), patch_mask=[p.patch_mask for p in pages])
        q = minilm.encode_queries(["who made the first mercury thermometer", "energy of cells"])
        assert [hs[0].id for hs in index.search(q, k=1)] == ["thermo", "cell"]


def test_a_long_page_is_covered_whole(minilm, tmp_path):
    from colprune.encoders.text import best_window, window_starts

    filler = " ".join(f"clause {i} of the agreement covers routine matters" for i in range(380))
    long_page = filler + "\nThe last line says the zebra ate marmalade on Tuesday."
    n_tok = len(minilm.tokenizer(long_page, add_special_tokens=False)["input_ids"])
    assert n_tok > 3000
    page, other = minilm.encode_pages([long_page, filler[:2000]])
    assert page.vectors.shape == (n_tok + 2, 384) and page.patch_mask.sum() == n_tok
    assert all(s.shape == (n_tok + 2,) for s in page.signals.values())
    assert 0.5 < page.signals["cls"][page.patch_mask].mean() < 2  # one page's scale, whatever its length
    with cp.Index.create(tmp_path / "long.h5", dim=384) as ix:
        ix.add(["long", "other"], [page.vectors, other.vectors])
        q = minilm.encode_queries(["zebra ate marmalade"])
        assert ix.search(q, k=1)[0][0].id == "long"
    # windows: the fewest with >= overlap shared tokens; each token from its most central window
    starts = window_starts(n_tok, minilm.width, minilm.overlap)
    assert starts[0] == 0 and starts[-1] + minilm.width == n_tok
    assert all(b - a <= minilm.width - minilm.overlap for a, b in zip(starts, starts[1:]))
    wider = window_starts(n_tok, minilm.width, minilm.overlap + 1)
    assert len(window_starts(n_tok, minilm.width, minilm.overlap)) < len(wider) + 1
    pick = best_window(n_tok, minilm.width, starts)
    t = np.arange(n_tok)
    s = np.asarray(starts)[pick]
    assert ((t >= s) & (t < s + minilm.width)).all()
    inner = (t >= minilm.overlap // 2) & (t < n_tok - minilm.overlap // 2)
    assert (np.minimum(t - s, s + minilm.width - 1 - t)[inner] >= minilm.overlap // 2 - 1).all()
    # a token deep in the first window has the vector that window gives alone
    window = minilm.tokenizer(long_page, add_special_tokens=False)["input_ids"][: minilm.width]
    first = minilm._forward([[minilm.front_id, *window, minilm.back_id]], [])[0][0]
    h = first[11].numpy()
    assert_allclose(page.vectors[11], h / np.linalg.norm(h), atol=1e-5)


def test_long_queries_are_truncated_to_one_window(minilm):
    q = minilm.encode_queries(["word " * 2000, "short query"])
    assert q[0].shape == (minilm.max_length, 384) and q[1].shape[0] == 4


def test_fewer_signals_skip_their_attention(minilm):
    full = minilm.encode_pages(TEXTS[:1])[0]
    only = minilm.encode_pages(TEXTS[:1], signals=["cls"])[0]
    assert set(only.signals) == {"cls"}
    assert_allclose(only.importance, full.importance, atol=1e-6)
    assert_allclose(only.vectors, full.vectors, atol=1e-6)


def test_bad_pages_and_models_are_refused(minilm):
    with pytest.raises(cp.InvalidInputError, match="page 1.*non-empty text"):
        minilm.encode_pages(["fine", "   "])
    with pytest.raises(cp.InvalidInputError, match="importance must be"):
        load_encoder("minilm", importance="nope")


def test_collect_pages_from_folders_pdfs_images_and_text(tmp_path):
    write_demo_pdfs(str(tmp_path / "docs"))
    Image.new("RGB", (40, 30), "white").save(tmp_path / "docs" / "scan.png")
    (tmp_path / "docs" / "notes.txt").write_text("plain text page", encoding="utf-8")
    pages = collect_pages([str(tmp_path / "docs")])
    kinds = {p.kind for p in pages}
    assert kinds == {"pdf", "image", "text"} and len([p for p in pages if p.kind == "pdf"]) == 16
    first = next(p for p in pages if p.id.endswith("thermometry.pdf#1"))
    assert "Fahrenheit" in first.text() and first.metadata["page"] == 1
    assert first.image(dpi=36).size == (298, 421)
    img = next(p for p in pages if p.kind == "image")
    assert img.text() == "" and img.image().size == (40, 30)


def test_unreadable_files_and_bombs_are_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(PageError, match="broken.png.*not a readable image"):
        collect_pages([str(bad)])
    big = tmp_path / "big.png"
    Image.new("L", (200, 200)).save(big)
    with pytest.raises(PageError, match="big.png.*decompression bomb"):
        collect_pages([str(big)], max_pixels=10_000)
    fake = tmp_path / "fake.pdf"
    fake.write_text("%PDF nope")
    with pytest.raises(PageError, match="fake.pdf: not a PDF .no %PDF- header"):
        collect_pages([str(fake)])
    with pytest.raises(PageError, match="no such file"):
        collect_pages([str(tmp_path / "absent.pdf")])
    skipped = []
    good = tmp_path / "ok.txt"
    good.write_text("hello", encoding="utf-8")
    pages = collect_pages([str(bad), str(good), str(fake)], skip_bad=True, on_skip=skipped.append)
    assert [p.id for p in pages] == [str(good)] and len(skipped) == 2


def test_real_page_images_are_listed(tmp_path):
    folder = shared_path("data", "pages", "publaynet")
    pages = collect_pages([str(folder)])
    assert len(pages) >= 20 and all(p.kind == "image" for p in pages)
    assert min(pages[0].image().size) > 100


def test_build_from_pdfs_then_search_text(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_demo_pdfs("docs")
    Image.new("RGB", (10, 10)).save("docs/scan.png")  # no text layer: skipped, the build goes on
    assert main(["build", "docs", "-o", "pages.h5", "--pruner", "adaptive", "--k", "-0.25", "-q", "--strict"]) != 0
    assert "scan.png" in capsys.readouterr().err
    assert main(["build", "docs", "-o", "pages.h5", "--pruner", "adaptive", "--k", "-0.25", "-q"]) == 0
    out = capsys.readouterr()
    assert "16 pages" in out.out and "skipped 1" in out.out + out.err
    assert main(["build", "docs", "-o", "pages.h5", "--pruner", "adaptive", "--k", "-0.25", "-q"]) == 0
    assert "16 already in the index" in capsys.readouterr().out  # resumable
    assert main(["search", "pages.h5", "who invented the mercury thermometer", "-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res[0]["query"] == "who invented the mercury thermometer"
    assert res[0]["hits"][0]["id"] == "thermometry.pdf#1"  # ids are relative to the folder given
    with cp.Index.open("pages.h5") as index:
        page = index.get("cells.pdf#2")
        assert index.encoder == "minilm"
        # source: the file relative to the id root (as the id names it); path: where it is
        assert {k: page.metadata[k] for k in ("source", "page", "kind")} == {"source": "cells.pdf", "page": 2, "kind": "pdf"}
        assert os.path.samefile(page.metadata["path"], tmp_path / "docs" / "cells.pdf")
        assert not page.patch_mask[0] and page.n_original > page.n_kept
    assert main(["build", "docs", "-o", "pages.h5", "--model", "other", "-q"]) != 0
    assert "minilm" in capsys.readouterr().err
